"""The architectures the assignment specifies, as data in the form ``describe_module``
gives for a student's model. Structural checks compare against these, so they need
neither the reference solution nor any student code; a test keeps the reference
solution in agreement with them."""

from __future__ import annotations


def conv2d(in_channels: int, out_channels: int, kernel: int, padding: int) -> dict:
    config = {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "kernel_size": [kernel, kernel],
        "stride": [1, 1],
        "padding": [padding, padding],
        "dilation": [1, 1],
        "groups": 1,
        "padding_mode": "zeros",
        "bias": True,
    }
    return {"kind": "Conv2d", "class": "Conv2d", "config": config}


def linear(in_features: int, out_features: int) -> dict:
    return {
        "kind": "Linear",
        "class": "Linear",
        "config": {"in_features": in_features, "out_features": out_features, "bias": True},
    }


def relu() -> dict:
    return {"kind": "ReLU", "class": "ReLU", "config": {}}


def flatten() -> dict:
    return {"kind": "Flatten", "class": "Flatten", "config": {}}


def three_layer_convnet(
    in_channel: int, channel_1: int, channel_2: int, num_classes: int, size: int = 32
) -> list[dict]:
    """The parameterised layers of ThreeLayerConvNet (its ReLUs are functional)."""
    return [
        conv2d(in_channel, channel_1, 5, 2),
        conv2d(channel_1, channel_2, 3, 1),
        linear(channel_2 * size * size, num_classes),
    ]


def sequential_convnet(channel_1: int = 32, channel_2: int = 16, num_classes: int = 10) -> list[dict]:
    """Question 6: every layer of the Sequential, in order."""
    return [
        conv2d(3, channel_1, 5, 2),
        relu(),
        conv2d(channel_1, channel_2, 3, 1),
        relu(),
        flatten(),
        linear(channel_2 * 32 * 32, num_classes),
    ]
