"""A user's own network for deepgeo-runner: any nn.Module taking ``in_channels`` and ``classes``.

Used by experiments/custom_network.yaml (``model._target_: tiny_net.TinyNet``). The runner fills
in ``in_channels`` (bands + indices of the prepared stack) and ``classes`` at run time; forward
must map (B, in_channels, H, W) to logits (B, classes, H, W), without softmax.
"""

from torch import nn


class TinyNet(nn.Module):
    """Three dilated 3x3 convolutions: a small context window, full resolution, no pooling."""

    def __init__(self, in_channels: int, classes: int, width: int = 16) -> None:
        super().__init__()
        layers, channels = [], in_channels
        for dilation in (1, 2, 4):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x):
        return self.head(self.features(x))
