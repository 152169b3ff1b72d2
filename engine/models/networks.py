"""The two networks: a 3-D U-Net that segments the spine, a 3-D ResNet that grades each vertebra.

Both are built from MONAI's blocks and sized for a CPU: the shipped ONNX files must stay
under 25 MB together, a full-spine volume must segment in seconds on two cores with ONNX
Runtime, and both must train on a CPU in under an hour on synthetic phantoms.

**Segmentation** (:class:`SegmenterConfig`, :func:`build_segmenter`): ``monai.networks.nets.UNet``
with residual units, channels (8, 16, 32, 64, 128) and four stride-2 levels, so every
spatial extent must be a multiple of 16 (the preprocessing pads to it). Four down-samplings
rather than three give the deepest features a field of view of several vertebrae, which is
what tells a sacrum from L5 and a rib head from a transverse process. MONAI's UNet does its
first convolution with stride 2, so almost no compute runs at full resolution; that keeps a
400x176x176 volume at a few seconds on two cores. Instance normalisation (MONAI's default)
makes the features indifferent to the overall intensity of a study (contrast phase, kernel),
which matters when the training data are synthetic. Input: (B, 1, D, H, W) float32, the
HU window mapped to [0, 1]; output: (B, C, D, H, W) logits over
:data:`~engine.models.contract.SEG_CLASSES` (see that module for why these classes).

**Classifier** (:class:`ClassifierConfig`, :func:`build_classifier`): ``monai.networks.nets.ResNet``
of depth 18, 34 (basic blocks) or 50 (bottleneck blocks, the depth of the kyphoplasty study),
with reduced stage widths (16, 32, 48, 64 by default instead of 64..512: a ~3 MB ResNet-18).
Its input is a cube of ``crop_size`` voxels cut from the 2 mm model grid around each vertebral
body: 32 voxels = 64 mm, enough for the body (up to ~50 mm wide, ~27 mm tall), both discs
and the neighbours' endplates, which a crush fracture can only be judged against. Cutting
from the model grid, rather than re-reading the source at 1 mm, keeps the whole chain one
request on one tensor (embedded and Triton alike). The usual stem (7^3 stride-2 convolution
then max-pool) would leave 1 voxel at the last stage of so small a crop; here the stem is a
3^3 convolution of stride 2 without pooling: 32 -> 16, 8, 4, 2 voxels through the four
stages. A learned stride-2 convolution into 16 channels keeps sub-voxel edge positions that
pooling would lose, and costs 8x fewer operations than a stride-1 stem (measured here: ~6x
faster ONNX Runtime inference, ~12x faster training steps), which is what makes CPU training
of the classifier fit in minutes. Two linear heads share the pooled features:
``fracture_logit`` (B, 1) and ``grade_logits`` (B, 4) over Genant grades 0..3.

Measured on this machine's two shared cores (ONNX Runtime 1.32, CPU arena off, untrained
weights, which cost the same as trained ones): segmentation 1x1x224x160x160 ~0.9-1.1 s,
1x1x400x176x176 ~2.0-2.4 s (peak RSS ~1.4 GB); 24 crops ~0.1 s. Files: 4.9 MB + 3.1 MB.
A U-Net training step on two 96^3 patches takes ~0.9 s with torch on the same cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.nets import ResNet, UNet
from torch import nn

from engine.models.contract import GRADE_CLASSES, SEG_CLASSES

# ResNet depth -> (block type, blocks per stage), as in the original ResNet family.
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
_BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class SegmenterConfig:
    """Shape of the segmentation U-Net; recorded in the exported file's metadata."""

    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    """Feature channels per resolution level (one stride-2 step between levels)."""
    num_res_units: int = 2
    """Residual units per level (MONAI UNet); 0 gives plain convolutions."""
    class_names: tuple[str, ...] = SEG_CLASSES
    """One output channel per name; index 0 must be ``background``."""
    norm: str = "instance"
    """MONAI normalisation name (``instance`` or ``batch``)."""
    dropout: float = 0.0
    """Dropout inside the U-Net's units during training."""

    def __post_init__(self) -> None:
        if len(self.channels) < 2:
            raise ValueError(f"channels {self.channels} needs at least two levels")
        if min(self.channels) < 1:
            raise ValueError(f"channels {self.channels} must be positive")
        if len(self.class_names) < 2 or self.class_names[0] != "background":
            raise ValueError(f"class_names {self.class_names} must start with 'background' and name >= 2 classes")

    @property
    def out_channels(self) -> int:
        return len(self.class_names)

    @property
    def grid_multiple(self) -> int:
        """Each spatial extent of the input must be a multiple of this."""
        return 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class ClassifierConfig:
    """Shape of the fracture classifier; recorded in the exported file's metadata."""

    depth: int = 18
    """ResNet depth: 18, 34 or 50."""
    widths: tuple[int, int, int, int] = (16, 32, 48, 64)
    """Planes of the four stages (standard ResNet: 64, 128, 256, 512)."""
    crop_size: int = 32
    """Edge of the cubic input crop in model-grid voxels (a multiple of 8 x stem_stride)."""
    stem_kernel: int = 3
    """Kernel of the first convolution (no max-pool follows it)."""
    stem_stride: int = 2
    """Stride of the first convolution: 2 (default) or 1 for full resolution in stage 1."""
    dropout: float = 0.2
    """Dropout on the pooled features before both heads, during training."""
    num_grades: int = len(GRADE_CLASSES)
    """Genant grades 0..3."""

    def __post_init__(self) -> None:
        if self.depth not in RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth {self.depth} is not one of {sorted(RESNET_LAYOUTS)}")
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise ValueError(f"widths {self.widths} must be four positive stage widths")
        if self.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride {self.stem_stride} must be 1 or 2")
        step = 8 * self.stem_stride
        if self.crop_size < step or self.crop_size % step:
            raise ValueError(
                f"crop_size {self.crop_size} must be a positive multiple of {step} "
                f"(stem stride {self.stem_stride}, then three stride-2 stages)"
            )

    @property
    def block(self) -> str:
        return RESNET_LAYOUTS[self.depth][0]

    @property
    def feature_size(self) -> int:
        """Length of the pooled feature vector the heads read."""
        return self.widths[-1] * (_BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1)


def build_segmenter(config: SegmenterConfig = SegmenterConfig()) -> UNet:
    """A freshly initialised segmentation U-Net (train it, or load a state dict into it)."""
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=config.out_channels,
        channels=config.channels,
        strides=(2,) * (len(config.channels) - 1),
        num_res_units=config.num_res_units,
        norm=config.norm,
        dropout=config.dropout,
    )


class VertebraClassifier(nn.Module):
    """A 3-D ResNet trunk with two heads: fracture (1 logit) and Genant grade (4 logits).

    The heads are independent on purpose: the fracture head is trained on the binary
    question the worklist asks, the grade head on all four grades; their agreement is
    checked when findings are fused, not forced by the architecture.
    """

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        block, layers = RESNET_LAYOUTS[config.depth]
        self.trunk = ResNet(
            block=block,
            layers=list(layers),
            block_inplanes=list(config.widths),
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_size=config.stem_kernel,
            conv1_t_stride=config.stem_stride,
            no_max_pool=True,
            feed_forward=False,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.fracture_head = nn.Linear(config.feature_size, 1)
        self.grade_head = nn.Linear(config.feature_size, config.num_grades)

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.dropout(self.trunk(crops))
        return self.fracture_head(features), self.grade_head(features)


def build_classifier(config: ClassifierConfig = ClassifierConfig()) -> VertebraClassifier:
    """A freshly initialised fracture / grade classifier."""
    return VertebraClassifier(config)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
