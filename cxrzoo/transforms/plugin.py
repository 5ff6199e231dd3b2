"""The core's transforms, registered through the same hook as any plugin's.

Registered by import path, so that listing them imports neither torch nor OpenCV; each
module is imported when a transform of it is first used.
"""

from __future__ import annotations

from cxrzoo.hookspecs import Register, hookimpl

#: name -> (class in cxrzoo.transforms, one-line description)
TRANSFORMS: dict[str, tuple[str, str]] = {
    "center_crop": ("image:CenterCrop", "Crop the largest centred square (a no-op on square images)."),
    "letterbox": (
        "image:Letterbox",
        "Pad to a square, centred, with the median grey of the image's border (or 0, or a level).",
    ),
    "resize": ("image:Resize", "Resize to image_size x image_size (area interpolation when shrinking)."),
    "clahe": ("image:Clahe", "Contrast-limited adaptive histogram equalisation."),
    "histeq": ("image:HistEq", "Global histogram equalisation."),
    "denoise": ("image:Denoise", "Edge-preserving bilateral filter (sigma in grey levels and pixels)."),
    "contrast_normalize": (
        "image:ContrastNormalize",
        "Stretch the [low, high] percentiles of the image to the full 0-255 range.",
    ),
    "lung_mask": ("image:LungMask", "Keep the lungs, blank the rest."),
    "scale": ("tensor:Scale", "uint8 0-255 to float 0-1."),
    "rescale": (
        "tensor:Rescale",
        "Map the 0-1 range linearly onto [low, high].",
    ),
    "normalize_grey": ("tensor:NormalizeGrey", "Grey-level normalisation: (x - 0.5) / 0.25."),
    "normalize_imagenet": (
        "tensor:NormalizeImagenet",
        "ImageNet mean and standard deviation (for ImageNet-pretrained backbones).",
    ),
    "standardize": ("tensor:Standardize", "Per-image contrast normalisation: zero mean, unit variance."),
    "augment": ("augment:BatchAugment", "Batch augmentation with every option explicit"),
    "augment_light": ("augment:AugmentLight", "Flip and up to 7 degrees of rotation, nothing else."),
    "augment_report": (
        "augment:AugmentReport",
        "The founding report's augmentations: flip, rotation up to 15 degrees, brightness and "
        "contrast jitter, random resized crop.",
    ),
    "augment_strong": (
        "augment:AugmentStrong",
        "Wider crops, shifts and intensity jitter for small data sets.",
    ),
}


@hookimpl
def register_transforms(register: Register) -> None:
    for name, (path, description) in TRANSFORMS.items():
        register(name, f"cxrzoo.transforms.{path}", description=description)
