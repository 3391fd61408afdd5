"""blit_shared: the transfer engine that the client and the daemon both import."""

__version__ = "0.1.0"
