"""CTNet: convolutional networks trained as DCT coefficients under an H.265 rate proxy and
stored as H.265 video."""
from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .layers import ChannelDCTConv1x1, DCTConv2d, configure_export_training
from .models import ModelSpec, build_model, ctnet18, ctnet50, fp32_bytes, parameter_summary, replace_with_dct_convs
from .rate import rate_proxy

__version__ = "0.1.0"
__all__ = ["ChannelDCTConv1x1", "DCTConv2d", "ModelSpec", "build_model", "configure_export_training",
           "ctnet18", "ctnet50", "fp32_bytes", "load_model", "parameter_summary", "rate_proxy",
           "read_checkpoint", "replace_with_dct_convs", "save_checkpoint", "__version__"]
