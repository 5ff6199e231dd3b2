"""The core's transforms, registered through the same hook as any plugin's."""

from __future__ import annotations

from cxrzoo.hookspecs import Register, hookimpl
from cxrzoo.transforms import augment, image, tensor


@hookimpl
def register_transforms(register: Register) -> None:
    register("resize", image.Resize)
    register("center_crop", image.CenterCrop)
    register("letterbox", image.Letterbox)
    register("clahe", image.Clahe)
    register("histeq", image.HistEq)
    register("denoise", image.Denoise)
    register("contrast_normalize", image.ContrastNormalize)
    register("lung_mask", image.LungMask)
    register("scale", tensor.Scale)
    register("normalize_grey", tensor.NormalizeGrey)
    register("normalize_imagenet", tensor.NormalizeImagenet)
    register("standardize", tensor.Standardize)
    register("augment", augment.BatchAugment, description="Batch augmentation with every option explicit")
    register("augment_light", augment.AugmentLight)
    register("augment_report", augment.AugmentReport)
    register("augment_strong", augment.AugmentStrong)
