"""The Linux dataplane: translation of a Cluster into ipsets and iptables rules, and the
Enforcer that puts them into the kernel. It never imports the daemon."""
