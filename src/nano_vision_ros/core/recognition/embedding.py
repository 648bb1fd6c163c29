"""Face embeddings: dlib's ResNet (ships working) or a user's ONNX FaceNet / ArcFace model.

Every embedder takes the BGR frame plus the faces' boxes and five landmarks, aligns each face to
its model's template and returns one vector per face (a (N, D) float32 array): dlib's raw (its
0.6 Euclidean threshold applies to those), ONNX models' L2-normalised (ArcFace convention).
dlib is imported only when the dlib embedder is created, so a machine without it can still run
ONNX embedders (and gets a clear message naming the pip packages if it asks for dlib).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any, Protocol

import cv2
import numpy as np

from nano_vision_ros.core import paths
from nano_vision_ros.core.errors import ConfigError, ModelError, RuntimeMissingError
from nano_vision_ros.core.inference import create_backend

log = logging.getLogger(__name__)

#: ArcFace / InsightFace 5-point template for a 112x112 crop (eyes, nose, mouth corners).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity (rotation, uniform scale, translation) taking `src` points onto `dst`
    in the least-squares sense (Umeyama), as InsightFace's alignment does."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    r = u @ np.diag(d) @ vt
    var_s = (sc**2).sum() / len(src)
    scale = (s * d).sum() / var_s if var_s > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float32)


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int, template: np.ndarray | None = None) -> np.ndarray:
    """Warp one face to a `size` x `size` crop with its five landmarks on the (scaled) template."""
    tpl = (ARCFACE_TEMPLATE_112 if template is None else template) * (size / 112.0)
    m = similarity_transform(landmarks, tpl)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def l2_normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class DlibEmbedder:
    """dlib_face_recognition_resnet_model_v1 (128-d) from PyPI ``face_recognition_models``.

    dlib's own 5-point shape predictor places the face (its chip template differs from MTCNN's
    landmarks), then the ResNet embeds the aligned 150x150 chips. ``net="onnx"`` (the default)
    runs the same weights converted to ONNX (``dlib_onnx``, cached) in ONNX Runtime, all chips of
    a frame in one batch: the same vectors at ~1/5 of dlib's cost here (docs/performance/
    recognition.md); ``net="dlib"`` keeps dlib's own network. Without the ``onnx`` package or a
    writable cache the dlib network is used, with a warning.
    """

    name = "dlib_resnet_v1"
    dim = 128

    def __init__(self, jitter: int = 0, net: str = "onnx", device: str = "cpu", threads: int = 0, **_: Any) -> None:
        try:
            import dlib
        except ImportError as err:
            raise RuntimeMissingError(
                "the dlib face embedder needs dlib: pip install dlib-bin face_recognition_models "
                "(or set embedding.kind:=onnx with your own FaceNet/ArcFace model)"
            ) from err
        # located without importing the package: its __init__ needs pkg_resources (setuptools),
        # which newer environments no longer ship
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeMissingError("the dlib face embedder needs its weights: pip install face_recognition_models")
        models = os.path.join(next(iter(spec.submodule_search_locations)), "models")
        sp_file = os.path.join(models, "shape_predictor_5_face_landmarks.dat")
        net_file = os.path.join(models, "dlib_face_recognition_resnet_model_v1.dat")
        import dlib

        self._dlib = dlib
        try:
            self._sp = dlib.shape_predictor(sp_file)
            self._net = dlib.face_recognition_model_v1(net_file)
        except RuntimeError as err:
            raise ModelError(f"dlib could not load {models}: {err}") from err
        self.jitter = int(jitter)
        if net not in ("onnx", "dlib"):
            raise ConfigError(f"embedding.net must be onnx or dlib (got {net!r})", "embedding.net")
        self._onnx: Any = None
        self._mean = np.zeros(3, np.float32)
        if net == "onnx" and self.jitter == 0:
            self._onnx, self._mean = self._load_onnx(net_file, device, threads)
        self.net = "onnx" if self._onnx is not None else "dlib"

    @staticmethod
    def _load_onnx(net_file: str, device: str, threads: int) -> tuple[Any, np.ndarray]:
        """The converted network (made once into the engine cache), or (None, _) with a warning."""
        from nano_vision_ros.core.inference.engine_cache import default_cache_dir
        from nano_vision_ros.core.recognition.dlib_onnx import cached_onnx

        if importlib.util.find_spec("onnx") is None:
            log.warning(
                "dlib face net: the onnx package is missing (pip install onnx); using dlib's own network (slower)"
            )
            return None, np.zeros(3, np.float32)
        try:
            path, mean = cached_onnx(net_file, default_cache_dir())
        except OSError as err:
            log.warning("dlib face net: cannot write the ONNX conversion (%s); using dlib's own network (slower)", err)
            return None, np.zeros(3, np.float32)
        return create_backend(str(path), "onnxruntime", device=device, threads=threads), mean

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, self.dim), np.float32)
        rgb = np.ascontiguousarray(
            cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
            if image_bgr.ndim == 3
            else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2RGB)
        )
        shapes = self._dlib.full_object_detections()
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64):
            shapes.append(self._sp(rgb, self._dlib.rectangle(int(x1), int(y1), int(x2), int(y2))))
        if self._onnx is not None:
            from nano_vision_ros.core.recognition.dlib_onnx import CHIP_SIZE, chip_tensor

            # dlib's own chip extraction (150 px, padding 0.25, as compute_face_descriptor does)
            chips = self._dlib.get_face_chips(rgb, shapes, CHIP_SIZE, 0.25)
            out = self._onnx.infer({"chip": chip_tensor(list(chips), self._mean)})[0]
            return np.asarray(out, np.float32).reshape(len(boxes), self.dim)
        vecs = self._net.compute_face_descriptor(rgb, shapes, self.jitter)
        # kept raw: dlib's model is trained for Euclidean distance < 0.6 on these vectors
        return np.array([np.array(v) for v in vecs], np.float32)

    def close(self) -> None:
        if self._onnx is not None:
            self._onnx.close()
            self._onnx = None
        self._net = None
        self._sp = None


class OnnxEmbedder:
    """A user's FaceNet / ArcFace ONNX (or TensorRT) model through ``core.inference``.

    Faces are aligned to the ArcFace template scaled to `input_size`; pixels are converted with
    ``(x - mean) / std`` in the given channel order; the layout is NCHW or NHWC.
    """

    def __init__(
        self,
        model: str,
        input_size: int = 112,
        mean: float | list[float] = 127.5,
        std: float | list[float] = 128.0,
        rgb: bool = True,
        layout: str = "nchw",
        backend: str = "auto",
        device: str = "auto",
        threads: int = 0,
        **_: Any,
    ) -> None:
        if not model:
            raise ConfigError("embedder 'onnx' needs a model file (parameter embedding.model)", "embedding.model")
        self.backend = create_backend(str(paths.resolve(model)), backend, device=device, threads=threads)
        self.input_size = int(input_size)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.rgb = bool(rgb)
        if layout not in ("nchw", "nhwc"):
            raise ConfigError(f"layout must be nchw or nhwc (got {layout!r})", "embedding.layout")
        self.layout = layout
        out = self.backend.outputs[0].shape
        self.dim = int(out[-1]) if isinstance(out[-1], int) else 0
        self.name = f"onnx:{model.rsplit('/', 1)[-1]}"
        self._in = self.backend.inputs[0].name
        self._batch_fixed = isinstance(self.backend.inputs[0].shape[0], int) and self.backend.inputs[0].shape[0] > 0

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0, max(self.dim, 1)), np.float32)
        img = image_bgr if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        crops = np.stack([align_face(img, lm, self.input_size) for lm in landmarks])
        if self.rgb:
            crops = crops[..., ::-1]
        x = (crops.astype(np.float32) - self.mean) / self.std
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        if self._batch_fixed:  # a model exported with batch 1
            out = np.concatenate([self.backend.infer({self._in: x[i : i + 1]})[0] for i in range(len(x))])
        else:
            out = self.backend.infer({self._in: x})[0]
        out = out.reshape(len(x), -1)
        self.dim = out.shape[1]
        return l2_normalize(out)

    def close(self) -> None:
        self.backend.close()


def create_embedder(kind: str, **options: Any) -> Embedder:
    """'dlib' (default, ships working) or 'onnx' (a user's model file)."""
    if kind == "dlib":
        return DlibEmbedder(**options)
    if kind == "onnx":
        return OnnxEmbedder(**options)
    raise ConfigError(f"unknown face embedder {kind!r}; choose dlib or onnx", "embedding.kind")
