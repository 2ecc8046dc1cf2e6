"""Building the enforcer's container image (``make azure-npm-image``); not part of the wheel."""
