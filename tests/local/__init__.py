"""Tests of the local cloud (starburst_local and `starburst-cli local`)."""
