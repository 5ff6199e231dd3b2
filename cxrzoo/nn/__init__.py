"""Building blocks shared by model plugins."""

from cxrzoo.nn.attention import CBAM, ChannelAttention, SpatialAttention
from cxrzoo.nn.backbone import create_backbone
from cxrzoo.nn.fpn import FPN
from cxrzoo.nn.losses import masked_bce

__all__ = ["CBAM", "FPN", "ChannelAttention", "SpatialAttention", "create_backbone", "masked_bce"]
