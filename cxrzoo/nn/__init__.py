"""Building blocks shared by model plugins."""

from cxrzoo.nn.attention import CBAM, ChannelAttention, SpatialAttention
from cxrzoo.nn.backbone import create_backbone
from cxrzoo.nn.fpn import FPN

__all__ = ["CBAM", "FPN", "ChannelAttention", "SpatialAttention", "create_backbone"]
