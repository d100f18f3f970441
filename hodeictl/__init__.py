"""hodeictl: the command-line client. It talks to hodeid only through hodei.protocol."""
