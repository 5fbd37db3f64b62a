"""Herald's shared library: everything more than one service needs, and nothing service-specific."""
