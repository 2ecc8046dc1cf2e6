"""Translation validation: a node proves that the rules in its kernel mean what the policies say.

``kernel`` reads what a dataplane installed and answers, for one packet, the verdict of those
rules; ``oracle`` is the one place where the enforcer asks the simulator (the independent
evaluation of policy semantics) for the verdict the policies give; ``check`` walks every pair
of endpoints on their ports and compares the two.
"""
