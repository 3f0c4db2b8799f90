"""Grad-CAM family (aesthetics_jax.explain.cam) against pytorch-grad-cam 1.5.7 (PyPI `grad-cam`).

References: torchvision `inception_v3` and `mobilenet_v2` with random weights and calibrated
BatchNorm statistics (test_convert_torchvision's recipe), a random 6-output linear regression
head in place of the classifier, converted with this project's torchvision converter. Every
gradient method (GradCAM, GradCAM++, XGradCAM, HiResCAM, LayerCAM) for every one of the six
outputs must equal pytorch-grad-cam's normalised map before the final resize within 1e-4 (its
resize is replaced by the identity: `get_target_width_height` returns the layer's size); the
resize is compared separately with OpenCV's; EigenCAM up to the SVD's sign.
"""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax import models
from aesthetics_jax.convert import torchvision as tv_convert
from aesthetics_jax.explain import cam as cam_lib

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils import model_targets  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402
from test_convert_torchvision import _nchw, _randomise_and_calibrate  # noqa: E402

TOL = 1e-4
NAMES = ["total", "difficulty", "visual", "composition", "quality", "semantic"]
HEADS = {"scores": {"type": "scores", "names": NAMES}}
REFERENCE = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
             "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM}


def _images(n, size, seed=0):
    """Smooth random images (blobs), so maps have structure rather than pixel noise."""
    rng = np.random.RandomState(seed)
    small = rng.uniform(0, 255, (n, 6, 6, 3)).astype(np.float32)
    return np.stack([cv2.resize(s, (size, size), interpolation=cv2.INTER_CUBIC) for s in small]).clip(0, 255)


def _pair(arch, size, tmp_path):
    torch.manual_seed(0)
    if arch == "inception":
        ref = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=False)
        _randomise_and_calibrate(ref, 1, size)
        ref.fc = torch.nn.Linear(2048, 6)
        fc = ref.fc
    else:
        ref = torchvision.models.mobilenet_v2(weights=None)
        _randomise_and_calibrate(ref, 2, size)
        ref.classifier = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(1280, 6))
        fc = ref.classifier[1]
    ref.eval()
    path = tmp_path / f"{arch}.pth"
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith(("fc.", "classifier."))}, path)
    model = models.create(arch if arch == "inception" else "mobilenet_v2", heads=HEADS, layout="torchvision",
                          preprocess="torch")
    variables, _ = tv_convert.load_torchvision_file(str(path), model, dont_load=["^scores/"])
    variables = jax.tree_util.tree_map(np.asarray, variables)
    variables["params"]["scores"]["dense"]["kernel"] = fc.weight.detach().numpy().T.copy()
    variables["params"]["scores"]["dense"]["bias"] = fc.bias.detach().numpy().copy()
    return ref, model, variables


@pytest.fixture(scope="module", params=["inception", "mobilenet_v2"])
def pair(request, tmp_path_factory):
    arch = request.param
    size = 224 if arch == "inception" else 128
    ref, model, variables = _pair(arch, size, tmp_path_factory.mktemp(arch))
    images = _images(2, size)
    layer = ref.Mixed_7c if arch == "inception" else ref.features[-1]
    return dict(arch=arch, ref=ref, model=model, variables=variables, images=images, layer=layer, size=size)


def _reference(pair, method_cls, layer, output, target_size=None):
    cam = method_cls(model=pair["ref"], target_layers=[layer])
    if target_size is None:  # no final resize: the layer's own size
        captured = {}
        handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
        with torch.no_grad():
            pair["ref"](_nchw(pair["images"]))
        handle.remove()
        h, w = captured["a"].shape[-2:]
        cam.get_target_width_height = lambda _: (w, h)
    targets = [model_targets.ClassifierOutputTarget(output)] * len(pair["images"])
    return cam(input_tensor=_nchw(pair["images"]), targets=targets)


def test_outputs_match_the_torch_model(pair):
    explainer = cam_lib.Explainer(pair["model"], pair["variables"], methods=["gradcam"])
    result = explainer(pair["images"])
    with torch.no_grad():
        expected = pair["ref"](_nchw(pair["images"])).numpy()
    np.testing.assert_allclose(result.predictions, expected, atol=1e-4, rtol=1e-4)
    assert [o.name for o in result.outputs] == NAMES


def test_gradient_cams_equal_pytorch_grad_cam(pair):
    explainer = cam_lib.Explainer(pair["model"], pair["variables"], methods=list(REFERENCE))
    result = explainer(pair["images"])
    for method, method_cls in REFERENCE.items():
        ours, flat = result.raw[method], result.flat[method]
        assert ours.shape[:2] == (2, 6) and flat.mean() < 0.5, (method, flat)
        for k in range(6):
            expected = _reference(pair, method_cls, pair["layer"], k)
            # a map with no positive evidence is the zero map on both sides, flagged on ours
            np.testing.assert_array_equal(flat[:, k], expected.max(axis=(1, 2)) == 0, err_msg=f"{method} output {k}")
            np.testing.assert_allclose(ours[:, k], expected, atol=TOL, rtol=0, err_msg=f"{method} output {k}")


def test_named_layer_equals_pytorch_grad_cam(pair):
    """A convolution by Flax path (intercepted) against the same torch module. (Not a BatchNorm:
    torchvision's in-place ReLU after it overwrites the activations pytorch-grad-cam's hook keeps.)"""
    if pair["arch"] == "inception":
        layer, ref_layer = "backbone/conv2d_93", pair["ref"].Mixed_7c.branch_pool.conv
    else:
        layer, ref_layer = "backbone/Conv_1", pair["ref"].features[-1][0]
    explainer = cam_lib.Explainer(pair["model"], pair["variables"], methods=["gradcam", "hirescam"], layer=layer,
                                  outputs=["total", "quality"])
    result = explainer(pair["images"])
    for method in ("gradcam", "hirescam"):
        for j, k in enumerate((0, 4)):
            expected = _reference(pair, REFERENCE[method], ref_layer, k)
            # raw (pre-BN) convolution outputs of InceptionV3's 2048-channel 1x1 conv: float32 rounding
            # differs between XLA and oneDNN by up to ~3e-4 of the peak there (1e-4 on MobileNetV2)
            tol = TOL if pair["arch"] == "mobilenet_v2" else 5 * TOL
            np.testing.assert_allclose(result.raw[method][:, j], expected, atol=tol, rtol=0, err_msg=f"{method} {k}")


def test_eigencam_equals_reference_up_to_sign(pair):
    result = cam_lib.Explainer(pair["model"], pair["variables"], methods=["eigencam"])(pair["images"])
    captured = {}
    handle = pair["layer"].register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    with torch.no_grad():
        pair["ref"](_nchw(pair["images"]))
    handle.remove()
    activations = captured["a"].numpy()
    projection = get_2d_projection(activations)
    for i in range(len(pair["images"])):
        candidates = []
        for sign in (1.0, -1.0):
            x = np.maximum(sign * projection[i], 0)
            x = x - x.min()
            candidates.append(x / (x.max() + 1e-7))
        ours = result.raw["eigencam"][i, 0]
        errors = [np.abs(ours - c).max() for c in candidates]
        assert min(errors) < TOL, errors
        # the sign convention: the map correlates positively with the channel sum of A
        chosen = (1.0, -1.0)[int(np.argmin(errors))] * projection[i]
        total = activations[i].sum(axis=0)
        assert np.sum((chosen - chosen.mean()) * (total - total.mean())) >= 0
        np.testing.assert_array_equal(result.raw["eigencam"][i, 0], result.raw["eigencam"][i, 5])


def test_final_resize_equals_opencv_and_pytorch_grad_cam(pair):
    maps = np.random.RandomState(3).uniform(0, 1, (2, 3, 5, 7)).astype(np.float32)
    ours = np.asarray(cam_lib.resize_maps(jnp.asarray(maps), (31, 23)))
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(ours[i, j], cv2.resize(maps[i, j], (23, 31)), atol=1e-5)
    result = cam_lib.Explainer(pair["model"], pair["variables"], methods=["gradcam"], outputs=["total"])(pair["images"])
    expected = _reference(pair, pgc.GradCAM, pair["layer"], 0, target_size=(pair["size"], pair["size"]))
    assert result.maps["gradcam"].shape == (2, 1, pair["size"], pair["size"])
    np.testing.assert_allclose(result.maps["gradcam"][:, 0], expected, atol=2 * TOL, rtol=0)


def _equal_but_kinks(actual, expected, atol):
    """Equal within `atol` but for at most 0.1 % of the elements (a ReLU6 kink crossed on the other
    side by one float32 program), and those within 5 x atol."""
    err = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    assert np.mean(err > atol) < 1e-3 and err.max() < 5 * atol, (int(np.sum(err > atol)), float(err.max()), atol)


def test_pixel_attributions_against_torch_autograd(pair):
    """Input gradients and Integrated Gradients equal torch autograd's (chain rule through the torch
    preprocessing); SmoothGrad with no noise is the gradient. (IG's completeness holds only in the
    limit: on this random ReLU6 network 64 / 256 / 1024 steps give sums within 50 / 6 / 3 % of
    f(x) - f(0).)"""
    if pair["arch"] != "mobilenet_v2":
        pytest.skip("one backbone is enough for the pixel methods (the CAM parity covers both)")
    explainer = cam_lib.Explainer(pair["model"], pair["variables"], outputs=["total", "semantic"],
                                  methods=["gradient"])
    result = explainer(pair["images"])
    x = _nchw(pair["images"]).requires_grad_(True)
    out = pair["ref"](x)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255.0
    for j, k in enumerate((0, 5)):
        (grad,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=True)
        expected = (grad / std).abs().amax(dim=1).numpy()                 # d / d raw pixel, max |.| over RGB
        expected = expected / expected.max(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(result.maps["gradient"][:, j], expected, atol=2e-3)
    # Integrated Gradients: the same midpoint Riemann sum computed with torch autograd (8 steps)
    ig = cam_lib.Explainer(pair["model"], pair["variables"], outputs=["total", "semantic"], ig_steps=8,
                           methods=["integrated_gradients"])(pair["images"]).attributions["integrated_gradients"]
    total = torch.zeros((2, 2, 3) + pair["images"].shape[1:3])
    for alpha in (np.arange(8) + 0.5) / 8:
        point = _nchw(alpha * pair["images"]).requires_grad_(True)
        values = pair["ref"](point)
        for j, k in enumerate((0, 5)):
            (grad,) = torch.autograd.grad(values[:, k].sum(), point, retain_graph=True)
            total[:, j] += grad / std
    raw = torch.from_numpy(pair["images"]).permute(0, 3, 1, 2)[:, None]
    expected = (raw * total / 8).sum(dim=2).numpy()                       # (x - 0) * mean grad, summed over RGB
    # ReLU6 kinks crossed at slightly different points by the two float32 implementations move single
    # pixels by ~0.5-1.2 % of the peak (4 of 65,536 over 1 % with jax 0.10.2 / numpy 2.4.6); the maps
    # agree as a whole
    _equal_but_kinks(ig, expected, 1e-2 * np.abs(expected).max())
    assert np.corrcoef(ig.ravel(), expected.ravel())[0, 1] > 0.999
    smooth = cam_lib.Explainer(pair["model"], pair["variables"], outputs=["total", "semantic"], methods=["smoothgrad"],
                               smoothgrad_samples=2, smoothgrad_sigma=0.0)(pair["images"])
    _equal_but_kinks(smooth.maps["smoothgrad"], result.maps["gradient"], 5e-3)  # kinks, as above
