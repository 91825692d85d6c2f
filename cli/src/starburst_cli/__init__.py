"""starburst-cli: the local cloud, infrastructure, status and housekeeping."""
