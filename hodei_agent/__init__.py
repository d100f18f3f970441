"""hodei-agent: runs inside each worker. It talks to hodeid only through hodei.protocol."""
