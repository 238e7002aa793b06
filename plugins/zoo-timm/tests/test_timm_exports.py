"""zoo-timm's exports (issue 32, item 3): one architecture of every timm model module exports to ONNX with parity,
and OpenCV DNN agrees with onnxruntime or is refused for it in ``runtimes.toml``.

Each test is ``check_exports.py``'s check (random weights perturbed by ``zoo.testing.randomize``, the export as
``zoo.get`` makes it, parity with PyTorch on random inputs and the sample photo, OpenCV DNN against onnxruntime) on
the architecture with the fewest parameters of a module (``timm.models.<module>``; the tag checked for an
architecture is its default one, see ``check_exports.architectures``). CI checks the first :data:`CI` modules of
:data:`BY_MODULE` (its smallest, a few seconds each); ``python -m pytest -m slow
plugins/zoo-timm/tests/test_timm_exports.py`` checks every module's, the largest of them hundreds of millions of
parameters, and recomputes :data:`BY_MODULE` from timm.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")
pytest.importorskip("cv2")
zoo_timm = pytest.importorskip("zoo_timm", reason="zoo-timm is not installed: pip install -e plugins/zoo-timm")

# By path and under a name of its own: zoo-torchvision's script is also called check_exports.
_script = importlib.util.spec_from_file_location("zoo_timm_check_exports",
                                                 Path(__file__).resolve().parents[1] / "check_exports.py")
check_exports = sys.modules[_script.name] = importlib.util.module_from_spec(_script)
_script.loader.exec_module(check_exports)

#: Each timm model module with pretrained tags -> the checked tag of its architecture with the fewest parameters
#: (millions, counted on the meta device), smallest first: ``check_exports.by_module`` computes it.
BY_MODULE = {
    "convnext": "timm/test_convnext.r160_in1k",  # 0.272 M
    "efficientnet": "timm/test_efficientnet.r160_in1k",  # 0.356 M
    "vision_transformer": "timm/test_vit.r160_in1k",  # 0.371 M
    "nfnet": "timm/test_nfnet.r160_in1k",  # 0.383 M
    "byobnet": "timm/test_byobnet.r160_in1k",  # 0.457 M
    "resnet": "timm/test_resnet.r160_in1k",  # 0.47 M
    "dla": "timm/dla46x_c.in1k",  # 1.068 M
    "mobilevit": "timm/mobilevit_xxs.cvnets_in1k",  # 1.272 M
    "edgenext": "timm/edgenext_xx_small.in1k",  # 1.327 M
    "mobilenetv3": "timm/mobilenetv3_small_050.lamb_in1k",  # 1.593 M
    "repghost": "timm/repghostnet_050.in1k",  # 2.314 M
    "efficientvit_msra": "timm/efficientvit_m0.r224_in1k",  # 2.349 M
    "regnet": "timm/regnetx_002.pycls_in1k",  # 2.685 M
    "cspnext": "timm/cspnext_tiny.rsb_a1_in1k",  # 2.734 M
    "starnet": "timm/starnet_s1.in1k",  # 2.869 M
    "iformer": "timm/iformer_t.in1k",  # 2.886 M
    "xcit": "timm/xcit_nano_12_p8_224.fb_in1k",  # 3.049 M
    "cspnet": "timm/cs3darknet_focus_s.ra4_e3600_r256_in1k",  # 3.275 M
    "efficientvit_mit": "timm/efficientvit_b0.r224_in1k",  # 3.41 M
    "swiftformer": "timm/swiftformer_xs.dist_in1k",  # 3.475 M
    "efficientformer_v2": "timm/efficientformerv2_s0.snap_dist_in1k",  # 3.6 M
    "pvt_v2": "timm/pvt_v2_b0.in1k",  # 3.667 M
    "fasternet": "timm/fasternet_t0.in1k",  # 3.905 M
    "fastvit": "timm/fastvit_t8.apple_in1k",  # 4.026 M
    "lcnetv2": "timm/lcnetv2_small.paddle_in1k",  # 4.129 M
    "inception_next": "timm/inception_next_atto.sail_in1k",  # 4.157 M
    "rexnet": "timm/rexnet_100.nav_in1k",  # 4.797 M
    "pit": "timm/pit_ti_224.in1k",  # 4.847 M
    "hardcorenas": "timm/hardcorenas_b.miil_green_in1k",  # 5.177 M
    "ghostnet": "timm/ghostnet_100.in1k",  # 5.183 M
    "repvit": "timm/repvit_m1.dist_in1k",  # 5.485 M
    "eva": "timm/vit_tiny_patch16_dinov3_qkvb.eupe_lvd1689m",  # 5.49 M
    "coat": "timm/coat_tiny.in1k",  # 5.499 M
    "convit": "timm/convit_tiny.fb_in1k",  # 5.711 M
    "deit": "timm/deit_tiny_patch16_224.fb_in1k",  # 5.717 M
    "hgnet": "timm/hgnetv2_b0.ssld_stage2_ft_in1k",  # 5.997 M
    "shvit": "timm/shvit_s1.in1k",  # 6.331 M
    "vision_transformer_hybrid": "timm/vit_tiny_r_s16_p8_224.augreg_in21k_ft_in1k",  # 6.338 M
    "cpubone": "timm/cpubone_nano.r224_in1k",  # 6.52 M
    "vovnet": "timm/ese_vovnet19b_dw.ra_in1k",  # 6.543 M
    "efficientvim": "timm/efficientvim_m1.e300_in1k",  # 6.679 M
    "crossvit": "timm/crossvit_tiny_240.in1k",  # 7.015 M
    "mambaout": "timm/mambaout_femto.in1k",  # 7.305 M
    "maxxvit": "timm/maxvit_rmlp_pico_rw_256.sw_in1k",  # 7.516 M
    "levit": "timm/levit_128s.fb_dist_in1k",  # 7.777 M
    "densenet": "timm/densenet121.ra_in1k",  # 7.979 M
    "visformer": "timm/visformer_tiny.in1k",  # 10.321 M
    "byoanet": "timm/eca_botnext26ts_256.c1_in1k",  # 10.593 M
    "resnest": "timm/resnest14d.gluon_in1k",  # 10.612 M
    "csatv2": "timm/csatv2.r512_in1k",  # 11.103 M
    "resnetv2": "timm/resnetv2_18.ra4_e3600_r224_in1k",  # 11.688 M
    "metaformer": "timm/poolformerv2_s12.sail_in1k",  # 11.892 M
    "cait": "timm/cait_xxs24_224.fb_dist_in1k",  # 11.956 M
    "sknet": "timm/skresnet18.ra_in1k",  # 11.958 M
    "tiny_vit": "timm/tiny_vit_5m_224.dist_in22k",  # 12.083 M
    "efficientformer": "timm/efficientformer_l1.snap_dist_in1k",  # 12.29 M
    "dpn": "timm/dpn68.mx_in1k",  # 12.612 M
    "hrnet": "timm/hrnet_w18_small.gluon_in1k",  # 13.187 M
    "lowformer": "timm/lowformer_b0.in1k",  # 14.1 M
    "mlp_mixer": "timm/resmlp_12_224.fb_in1k",  # 15.351 M
    "nest": "timm/nest_tiny_jx.goog_in1k",  # 17.058 M
    "convmixer": "timm/convmixer_768_32.in1k",  # 21.11 M
    "vision_transformer_relpos": "timm/vit_srelpos_small_patch16_224.sw_in1k",  # 21.973 M
    "vitamin": "timm/vitamin_small_224.datacomp1b_clip_ltt",  # 22.173 M
    "tnt": "timm/tnt_s_legacy_patch16_224.in1k",  # 23.755 M
    "inception_v3": "timm/inception_v3.tv_in1k",  # 23.835 M
    "rdnet": "timm/rdnet_tiny.nv_in1k",  # 23.863 M
    "twins": "timm/twins_svt_small.in1k",  # 24.061 M
    "mvitv2": "timm/mvitv2_tiny.fb_in1k",  # 24.173 M
    "res2net": "timm/res2next50.in1k",  # 24.671 M
    "volo": "timm/volo_d1_224.sail_in1k",  # 26.632 M
    "hieradet_sam2": "timm/sam2_hiera_tiny.fb_r896",  # 26.851 M
    "xception_aligned": "timm/xception41p.ra3_in1k",  # 26.908 M
    "sequencer": "timm/sequencer2d_s.in1k",  # 27.652 M
    "hiera": "timm/hiera_tiny_224.mae_in1k_ft_in1k",  # 27.91 M
    "swin_transformer": "timm/swin_tiny_patch4_window7_224.ms_in1k",  # 28.288 M
    "swin_transformer_v2_cr": "timm/swinv2_cr_tiny_ns_224.sw_in1k",  # 28.333 M
    "swin_transformer_v2": "timm/swinv2_tiny_window16_256.ms_in1k",  # 28.347 M
    "davit": "timm/davit_tiny.msft_in1k",  # 28.36 M
    "focalnet": "timm/focalnet_tiny_srf.ms_in1k",  # 28.427 M
    "selecsls": "timm/selecsls60.in1k",  # 30.671 M
    "tresnet": "timm/tresnet_m.miil_in21k_ft_in1k",  # 31.389 M
    "nextvit": "timm/nextvit_small.bd_in1k",  # 31.763 M
    "inception_v4": "timm/inception_v4.tf_in1k",  # 42.68 M
    "inception_resnet_v2": "timm/inception_resnet_v2.tf_in1k",  # 55.843 M
    "pnasnet": "timm/pnasnet5large.tf_in1k",  # 86.058 M
    "naflexvit": "timm/naflexvit_base_patch16_parfac_gap.e300_s576_in1k",  # 86.462 M
    "beit": "timm/beit_base_patch16_224.in22k_ft_in22k_in1k",  # 86.531 M
    "qwen3_vit": "timm/qwen3_vit_88m.qwen3_5_0_8b",  # 87.415 M
    "nasnet": "timm/nasnetalarge.tf_in1k",  # 88.753 M
    "vision_transformer_sam": "timm/samvit_base_patch16.sa1b",  # 89.671 M
    "vgg": "timm/vgg11.tv_in1k",  # 132.863 M
    "gemma4_vit": "timm/gemma4_vit_167m.gemma4_e4b_it",  # 167.365 M
    "mobilenetv5": "timm/mobilenetv5_300m.gemma3n",  # 294.127 M
    "deepseek_vit": "timm/deepseek_vit_412m.deepseek_v4_1_flash",  # 411.843 M
}
#: How many of :data:`BY_MODULE`'s modules CI checks: the 40 smallest (up to 6.6 M parameters; 78 s for the 40 in one
#: process on 2 cores, 0.2 to 12 s each); the other 55, from 6.7 M to 412 M parameters (minutes each for the largest;
#: well over 12 minutes in all), are only in the slow set.
CI = 40
SPECS = {spec.name: spec for spec in zoo_timm.load_specs() if spec.name in BY_MODULE.values()}


def assert_exports(name: str, folder: Path) -> None:
    spec = SPECS[name]
    refused = check_exports.refusals().get("opencv", {})
    opencv_refused = spec.unsupported.get("opencv") or refused.get(name)
    crashes = bool(opencv_refused) and "crashes" in opencv_refused  # known to take the process down: not run
    row = check_exports.check(spec, folder, opencv=not crashes)
    assert row["exported"], row.get("error")
    # Parity: the same top class on every input, where there are classes (an embedding has none).
    assert row["top1"] == 1.0 or (row["top1"] is None and spec.task == "image-embedding"), row
    assert row["max_rel"] <= spec.rtol or row["max_abs"] <= spec.atol, row
    if row.get("opencv", "not run") != "agrees":
        assert opencv_refused, f"OpenCV DNN {row.get('opencv')} on {name} and runtimes.toml does not refuse it: {row}"
    if row.get("openvino") != "agrees":
        openvino_refused = spec.unsupported.get("openvino") or check_exports.refusals().get("openvino", {}).get(name)
        assert openvino_refused, f"OpenVINO {row.get('openvino')} on {name} and runtimes.toml does not refuse it: {row}"


def test_32_3_every_module_is_represented():
    """Every timm model module with a tag in the catalogue has its entry, an architecture of that module checked
    for it (the cheap half of what the slow test below recomputes)."""
    archs = check_exports.architectures()
    module_of = check_exports.modules()
    assert set(BY_MODULE) == {module_of[arch] for arch in archs}
    for module, name in BY_MODULE.items():
        arch = name.removeprefix("timm/").partition(".")[0]
        assert module_of[arch] == module and archs[arch].spec.name == name


@pytest.mark.slow
def test_32_3_each_module_is_represented_by_its_smallest_architecture():
    archs = check_exports.architectures()
    params = check_exports.parameter_counts(archs.values())  # minutes on the meta device, then cached
    assert {module: arch.spec.name for module, arch in check_exports.by_module(archs, params).items()} == BY_MODULE


@pytest.mark.parametrize("module", list(BY_MODULE)[:CI])
def test_32_3_exports_with_parity(module, tmp_path):
    assert_exports(BY_MODULE[module], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("module", list(BY_MODULE))
def test_32_3_every_module_exports_with_parity(module, tmp_path):
    assert_exports(BY_MODULE[module], tmp_path)
