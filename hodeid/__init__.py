"""hodeid: the daemon. Nothing outside this package imports from it."""
