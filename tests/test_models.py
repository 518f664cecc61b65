import numpy as np
import pytest

import models


def resnet_parameters(num_classes, num_blocks, filters, dense_units):
    """The from-scratch model's parameter count, worked out from its description by hand."""
    conv = lambda k, cin, cout: k * k * cin * cout  # noqa: E731  (convolutions have no bias)
    bn = lambda c: 4 * c  # noqa: E731  gamma, beta, moving mean, moving variance
    total = conv(7, 3, filters) + bn(filters)
    cin = filters
    for index in range(num_blocks):
        cout = filters * 2**index
        total += conv(1, cin, cout) + bn(cout)  # the 1x1 skip
        total += conv(3, cin, cout) + 2 * conv(3, cout, cout) + 3 * bn(cout)
        cin = cout
    return total + (cin * dense_units + dense_units) + (dense_units * num_classes + num_classes)


@pytest.mark.parametrize("image_size,num_blocks,filters", [(32, 2, 4), (64, 3, 8)])
def test_resnet_shapes_and_parameter_count(image_size, num_blocks, filters):
    model = models.build("resnet", num_classes=5, image_size=image_size, num_blocks=num_blocks, filters=filters,
                         dense_units=16)
    probabilities = model.predict(np.zeros((2, image_size, image_size, 3), np.uint8), verbose=0)
    assert probabilities.shape == (2, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert model.count_params() == resnet_parameters(5, num_blocks, filters, 16)


def test_nasnet_freezes_a_fraction_and_keeps_frozen_batchnorm_in_inference_mode():
    model = models.build("nasnet", num_classes=3, image_size=32, weights=None, freeze_fraction=0.5, dense_units=8)
    x = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    assert model(x).shape == (4, 3)
    base_layers = [layer for layer in model.layers
                   if not layer.name.startswith(("head_", "probabilities", "image", "scaling"))]
    frozen = [layer for layer in base_layers if not layer.trainable]
    assert abs(len(frozen) - len(base_layers) // 2) <= 1
    batchnorms = [layer for layer in base_layers if layer.__class__.__name__ == "BatchNormalization"]
    frozen_bn = next(layer for layer in batchnorms if not layer.trainable)
    trained_bn = next(layer for layer in reversed(batchnorms) if layer.trainable)
    before = frozen_bn.moving_mean.numpy().copy(), trained_bn.moving_mean.numpy().copy()
    model(x, training=True)
    np.testing.assert_array_equal(frozen_bn.moving_mean.numpy(), before[0])
    assert not np.array_equal(trained_bn.moving_mean.numpy(), before[1])


def scaled_input(model, pixels):
    import keras

    return keras.Model(model.input, model.get_layer("scaling").output)(pixels).numpy()


@pytest.mark.parametrize("name", ["resnet", "nasnet"])
def test_first_layer_scales_uint8_pixels_with_the_dataset_statistics(name, tmp_path):
    import keras

    mean, std = [120.0, 110.0, 100.0], [50.0, 60.0, 70.0]
    model = models.build(name, num_classes=3, image_size=32, pixel_stats=(mean, std), weights=None, dense_units=8) \
        if name == "nasnet" else models.build(name, num_classes=3, image_size=32, pixel_stats=(mean, std),
                                              num_blocks=2, filters=4, dense_units=8)
    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(scaled_input(model, pixels), (pixels - np.array(mean)) / np.array(std), atol=1e-4)
    model.save(tmp_path / "m.keras")  # the statistics travel with the model
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(scaled_input(reloaded, pixels), (pixels - np.array(mean)) / np.array(std), atol=1e-4)


def nasnet_weights_file(folder) -> tuple[str, dict]:
    """A NASNetMobile no-top weights file (standing in for Keras' ``NASNet-mobile-no-top.h5``: no
    download here) and its base's weights by layer name."""
    import keras

    scratch = models.build("nasnet", num_classes=3, image_size=32, weights=None, dense_units=8)
    base = keras.Model(scratch.input, scratch.get_layer("normal_concat_12").output)
    weights = str(folder / "nasnet-no-top.weights.h5")
    base.save_weights(weights)
    return weights, {layer.name: layer.get_weights() for layer in base.layers if layer.weights}


def assert_base_weights_are(model, expected: dict):
    compared = 0
    for name, values in expected.items():
        for loaded, saved in zip(model.get_layer(name).get_weights(), values):
            np.testing.assert_array_equal(loaded, saved, err_msg=name)
            compared += 1
    assert compared > 500  # NASNetMobile's convolutions and batch norms, not a handful


def test_pretrained_nasnet_gets_the_scaling_its_weights_expect(tmp_path):
    """ImageNet NASNetMobile was trained on pixels in [-1, 1] (Keras' nasnet.preprocess_input)."""
    weights, saved = nasnet_weights_file(tmp_path)
    pretrained = models.build("nasnet", num_classes=3, image_size=32, weights=weights, dense_units=8,
                              pixel_stats=([120.0] * 3, [50.0] * 3))
    assert_base_weights_are(pretrained, saved)
    pixels = np.array([[[[0, 127, 255]]]], np.uint8).repeat(32, 1).repeat(32, 2)
    np.testing.assert_allclose(scaled_input(pretrained, pixels)[0, 0, 0], [-1, 127 / 127.5 - 1, 1], atol=1e-6)
    from keras.applications import nasnet

    np.testing.assert_allclose(scaled_input(pretrained, pixels), nasnet.preprocess_input(pixels.astype("float32")),
                               atol=1e-6)


def test_imagenet_weights_go_through_keras_own_download(tmp_path, monkeypatch):
    """``--weights imagenet``: Keras fetches ``nasnet_mobile_no_top.h5`` with ``get_file`` (and its
    cache); here a local file is what ``get_file`` hands back, so the loading code itself runs."""
    from keras.src.utils import file_utils

    weights, saved = nasnet_weights_file(tmp_path)
    asked = []
    monkeypatch.setattr(file_utils, "get_file", lambda name, *args, **kwargs: asked.append(name) or weights)
    pretrained = models.build("nasnet", num_classes=3, image_size=32, weights="imagenet", dense_units=8)
    assert asked == ["nasnet_mobile_no_top.h5"]
    assert_base_weights_are(pretrained, saved)


@pytest.mark.parametrize("name,kwargs,quoted", [
    ("vgg", {}, "'vgg'"),
    ("resnet", {"num_blocks": 0}, "0"),
    ("resnet", {"dropout": 1.5}, "1.5"),
    ("resnet", {"filters": -3}, "-3"),
    ("nasnet", {"freeze_fraction": 1.5}, "1.5"),
    ("nasnet", {"weights": "/no/such/weights.h5"}, "'/no/such/weights.h5'"),
])
def test_bad_hyperparameters_raise_value_error_quoting_the_value(name, kwargs, quoted):
    with pytest.raises(ValueError, match=quoted.replace(".", r"\.")):
        models.build(name, num_classes=4, image_size=32, **kwargs)


def test_image_too_small_for_the_blocks():
    with pytest.raises(ValueError, match="too small"):
        models.build("resnet", num_classes=4, image_size=16, num_blocks=4)
