"""audiomae: masked autoencoders that listen, for packet-loss concealment and classification."""

__version__ = "0.1.0"
