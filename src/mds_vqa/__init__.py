"""mds-vqa: model-informed data selection for video quality assessment."""

__version__ = "0.1.0"
