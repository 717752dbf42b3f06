"""Control plane for the government's integrated cloud and video-conference network."""

__version__ = "0.1.0"
