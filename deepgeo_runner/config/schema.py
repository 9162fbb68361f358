"""Structured-config schemas of our own config groups.

They are registered in Hydra's ConfigStore and listed first in each group's YAML defaults,
so that a misspelt key or a value of the wrong type fails while the config is composed, in
well under a second and long before torch is imported. Third-party ``_target_`` groups
(``model``, ``loss``, ``trainer``, ``optimizer``) carry no schema: their keys belong to their classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from deepgeo_runner.assess.choices import Allocation
from deepgeo_runner.config.stages import DEFAULT_STAGES
from deepgeo_runner.core.classes import Background
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.export.formats import MODEL_FORMATS, parse_formats
from deepgeo_runner.geo.choices import ChipStrategy, OtherClasses, Resampling, Split
from deepgeo_runner.geo.nodata import NodataRule
from deepgeo_runner.geo.stitch import CHIP_SIZE, Blend
from deepgeo_runner.ml.choices import Augmentation, D4Op, ProbabilityFormat

# The version of this schema, written to every run's provenance.json (config_schema_version).
# Raise it when a change makes a run's saved .hydra/config.yaml mean something else or fail to
# compose (a key renamed or removed, a default whose meaning changed); `deepgeo-repeat` then warns.
CONFIG_SCHEMA_VERSION = 1


class MonitorMode(StrEnum):
    """Which way ``train.monitor`` improves; ``auto``: min for a loss (a name with 'loss'), else max."""

    auto = "auto"
    min = "min"
    max = "max"


def range_error(key: str, value: object, accepted: str) -> ConfigError:
    """The one wording of a bad value: the key, the value and what would be accepted."""
    return ConfigError(f"{key}={value!r} is not valid: expected {accepted}.")


def _given(value: object) -> bool:
    return value is not None and value != MISSING


def check_data_ranges(data: Any) -> None:
    """Ranges of the ``data`` keys: run on the composed config and on every :class:`DataConfig`
    built in Python (``__post_init__``), so a library caller gets the same message."""
    if data.chip_size < 8:
        raise range_error("data.chip_size", data.chip_size, "at least 8 pixels")
    if _given(data.block_size) and data.block_size < data.chip_size:
        raise range_error("data.block_size", data.block_size, f"at least data.chip_size ({data.chip_size})")
    fractions = list(data.split_fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise range_error("data.split_fractions", fractions,
                          "three non-negative shares [train, val, test] with train > 0")
    if data.train_chips < 1:
        raise range_error("data.train_chips", data.train_chips, "a positive number of chips")
    if not 0 <= data.min_valid_fraction <= 1:
        raise range_error("data.min_valid_fraction", data.min_valid_fraction, "a fraction in [0, 1]")
    if data.batch_size < 1:
        raise range_error("data.batch_size", data.batch_size, "a positive batch size")
    if _given(data.split_buffer) and data.split_buffer < 0:
        raise range_error("data.split_buffer", data.split_buffer, "a non-negative number of pixels")
    ring = getattr(data, "boundary_ignore_px", 0)
    if isinstance(ring, bool) or not isinstance(ring, int | float) or not 0 <= ring <= 64:
        raise range_error("data.boundary_ignore_px", ring, "a ring width in pixels in [0, 64] (0: off; PRODES "
                          "studies ignore 2 px at 30 m)")
    if not 0 <= data.oversample_fraction <= 1:
        raise range_error("data.oversample_fraction", data.oversample_fraction, "a fraction in [0, 1]")
    for key in ("train_stride", "eval_stride"):
        value = getattr(data, key)
        if _given(value) and value < 1:
            raise range_error(f"data.{key}", value, "a positive stride in pixels")
    _check_folds(data)


def _check_folds(data: Any) -> None:
    """``data.folds`` (K ≥ 2, or null: one split) and ``data.fold`` (0..K-1, only with folds)."""
    folds, fold = getattr(data, "folds", None), getattr(data, "fold", None)
    if not _given(folds):
        if _given(fold):
            raise ConfigError(f"data.fold={fold!r} needs data.folds: give the number of folds K too, e.g. "
                              f"data.folds=5 data.fold={fold} (or drop data.fold for the single split).")
        return
    if folds < 2:
        raise range_error("data.folds", folds, "at least 2 folds (or null for the single train/val/test split)")
    if _given(fold) and not 0 <= fold < folds:
        raise range_error("data.fold", fold, f"a fold index in 0..{folds - 1} (data.folds={folds})")


def check_predict_ranges(pred: Any) -> None:
    """Ranges of the ``predict`` keys (composed config and :class:`PredictConfig` alike)."""
    if not 0 <= pred.overlap < 1:
        raise range_error("predict.overlap", pred.overlap, "a fraction in [0, 1)")
    if _given(pred.window) and pred.window < 8:
        raise range_error("predict.window", pred.window, "at least 8 pixels")
    if pred.min_area_ha < 0:
        raise range_error("predict.min_area_ha", pred.min_area_ha, "a non-negative area in hectares")
    shift = getattr(pred, "prior_shift", "auto")
    if str(shift) != "auto" and not isinstance(shift, bool):
        raise range_error("predict.prior_shift", shift, "'auto', true or false")
    mmu = getattr(pred, "mmu_ha", 0)
    if isinstance(mmu, bool) or not isinstance(mmu, int | float) or mmu < 0:
        raise range_error("predict.mmu_ha", mmu, "a non-negative area in hectares (0: off; PRODES maps 6.25)")


AUTO_REFERENCE = "auto"  # assess.reference's default: the demo's truth on the built-in demo, else none


def builtin_demo(data: Any) -> bool:
    """Whether ``data`` is the built-in demo scene (``data=demo`` without a ``data.image`` of the user's)."""
    return getattr(data, "name", None) == "demo" and getattr(data, "image", None) is None


def assess_reference(assess: Any, data: Any = None) -> str | None:
    """``assess.reference`` as the run takes it: ``'auto'`` (the default) is ``'demo'`` on the built-in
    demo scene, so that a newcomer's first run measures its map against the demo's wall-to-wall truth,
    unless an ``assess.sample`` is given; on any other data (or without ``data``) it is none.
    ``assess.reference=null`` turns the demo's assessment off."""
    reference = getattr(assess, "reference", None)
    if reference != AUTO_REFERENCE:
        return reference
    if _given(getattr(assess, "sample", None)) or not builtin_demo(data):
        return None
    return DEMO_REFERENCE


def run_stages(stages: Any, assess: Any, data: Any = None, export: Any = None) -> list[str]:
    """The stages a run goes through: ``stages`` as given, except that the default cycle gains
    ``assess`` (before ``report``) when ``assess.reference`` or ``assess.sample`` says what to
    assess the map against (``assess.reference=auto``, the default, on the built-in demo: see
    :func:`assess_reference`), and ends with ``export`` when ``export.formats`` names formats. An
    explicit list is taken as it is."""
    stages = [str(s) for s in stages]
    default = stages == list(DEFAULT_STAGES)
    wanted = _given(assess_reference(assess, data)) or _given(getattr(assess, "sample", None))
    if default and wanted:
        stages.insert(stages.index("report"), "assess")
    if default and getattr(export, "formats", None):
        stages.append("export")
    return stages


def check_export_ranges(export: Any) -> None:
    """The ``export`` keys (composed config and :class:`ExportConfig` alike): known formats, each once,
    ``mlm`` with a model file to describe, a tile of at least 8 pixels."""
    formats = list(export.formats or [])
    if formats:
        names = parse_formats(formats, "export.formats")
        if len(names) != len(formats):
            raise range_error("export.formats", formats, "each format at most once")
        if not set(names) & set(MODEL_FORMATS):
            raise range_error("export.formats", formats, "a model file to go with mlm.json (it describes one): "
                              "onnx or pt2 as well, e.g. export.formats=[onnx,mlm]")
    if _given(export.tile) and export.tile < 8:
        raise range_error("export.tile", export.tile, "at least 8 pixels, or null for the checkpoint's chip size")


def check_assess_ranges(assess: Any) -> None:
    """Ranges of the ``assess`` keys (composed config and :class:`AssessConfig` alike)."""
    if not 0 < assess.target_se < 0.5:
        raise range_error("assess.target_se", assess.target_se, "a standard error of overall accuracy in (0, 0.5), "
                          "e.g. 0.01")
    ua = assess.users_accuracy
    values = list(ua.values()) if hasattr(ua, "values") else [ua]
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1 for v in values):
        raise range_error("assess.users_accuracy", ua, "a user's accuracy in (0, 1) for every stratum, or a mapping "
                          "class → accuracy, e.g. {deforestation: 0.7, forest: 0.9}")
    if assess.min_per_stratum < 2:
        raise range_error("assess.min_per_stratum", assess.min_per_stratum, "at least 2 units (a variance needs two)")
    if _given(assess.sample_size) and assess.sample_size < 2:
        raise range_error("assess.sample_size", assess.sample_size, "a total of at least 2 units, or null")
    if _given(assess.reference) and assess.reference != AUTO_REFERENCE and _given(assess.sample):
        raise ConfigError(f"assess.reference={assess.reference!r} and assess.sample={assess.sample!r} are both set: "
                          "the reference classes come either from a reference layer or from a labelled sample; "
                          "unset one.")


@dataclass
class SceneFiles:
    """Another scene, with its own ground truth, that supplies every chip of one split."""

    image: Any = None  # GeoTIFF/COG with the training scene's bands (date → file for a time stack)
    labels: str | None = None  # its ground truth, with the same class column and values


@dataclass
class SplitScenesConfig:
    """Val and/or test from other scenes than the training one (``data.split_scenes.test.image=...``)."""

    val: SceneFiles = field(default_factory=SceneFiles)
    test: SceneFiles = field(default_factory=SceneFiles)


@dataclass
class DataConfig:
    """The dataset description that every other group interpolates from."""

    name: str = MISSING
    image: Any = None  # GeoTIFF/COG, a list of tiles to mosaic, or date → file(s): a time stack
    labels: str | None = None  # vector file (gpkg/shp/geojson) or a label GeoTIFF
    class_column: str = "class"
    classes: list[str] = field(default_factory=list)  # ids 1..N in this order
    class_values: list[int] | None = None  # values in the labels that mean each class
    class_colors: list[str] | None = None  # '#rrggbb' per class, for maps and colour tables
    band_names: list[str] = field(default_factory=list)  # role of each band: blue, red, nir...
    dates: list[str] = field(default_factory=list)  # dates of a multi-date stack (date-major bands)
    background: Background = Background.ignore  # pixels outside every labelled class: 'ignore' or 'class'
    nodata: Any = None  # nodata of the image (one value, or one per band), overriding the file's
    nodata_rule: NodataRule = NodataRule.gdal  # gdal: nodata where every band is (or the file's mask); any_band
    allow_missing_classes: bool = False  # train although a class has no training pixel (else the check stops)
    chip_size: int = CHIP_SIZE
    block_size: int | None = None  # side of the split blocks in pixels; default 2 chips
    split_fractions: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    train_chips: int = 400  # random training chips drawn inside the training blocks
    eval_stride: int | None = None  # stride of the val/test grid chips; default chip_size
    min_valid_fraction: float = 0.05  # chips with fewer labelled pixels are dropped
    chip_strategy: ChipStrategy = ChipStrategy.random  # training chips: 'random', 'grid' or 'points'
    train_stride: int | None = None  # stride of grid training chips; default chip_size
    chip_points: str | None = None  # point file of chip centres (chip_strategy=points)
    split_buffer: int | None = None  # px between training chips and val/test; default chip_size // 4
    balance_classes: bool = True  # random training chips: an equal share anchored on each class
    split_vector: str | None = None  # polygons naming their split (train/val/test); replaces the blocks
    split_column: str = "split"  # column of split_vector holding 'train', 'val' or 'test'
    split_scenes: SplitScenesConfig = field(default_factory=SplitScenesConfig)  # val/test from other scenes
    folds: int | None = None  # spatial k-fold: K class-stratified groups of blocks (or split polygons); null: one split
    fold: int | None = None  # with folds: this run's fold 0..K-1 (test = group i, val dealt from the rest); default 0
    oversample_class: str | None = None  # a class that a share of training chips must contain
    oversample_fraction: float = 0.5  # that share
    device_resident: Any = "auto"  # chip store in device memory, batches gathered there: auto, true or false
    resident: bool | None = None  # deprecated spelling of device_resident (true/false), honoured with a warning
    batch_size: int = 16
    num_workers: int = 0
    demo_size: int = 768  # side of the generated demo scene (data=demo only)
    sensor: str | None = None  # band-name preset: landsat5/7/8/9, sentinel2 (when band_names is [])
    scale: Any = None  # reflectance = DN * scale + offset; one number or one per band
    offset: Any = None  # e.g. Landsat Collection 2 L2: scale 0.0000275, offset -0.2
    bbox: list[float] | None = None  # crop [minx, miny, maxx, maxy] in the target CRS
    aoi: str | None = None  # crop to the polygons of this vector file (outside → nodata)
    crs: str | None = None  # reproject to this CRS, e.g. EPSG:32722; null keeps the image's
    resolution: Any = None  # target pixel size (one number or [x, y]); null keeps the image's
    resampling: Resampling = Resampling.nearest  # nearest, bilinear, cubic, average or mode
    class_groups: Any = None  # (a mapping) class → source classes merged into it
    other_classes: OtherClasses = OtherClasses.background  # labelled features of no class of interest
    all_touched: bool = False  # burn every pixel a polygon touches, not only centres inside
    boundary_ignore_px: float = 0.0  # the field's protocol: a ring this wide (px, Euclidean) along every label border
    #   is ignored by the loss (training and val/test chips) and by the test's `protocol` scores; the plain test
    #   scores keep every labelled pixel. 0: off; PRODES studies use 2 at 30 m
    datamodule: Any = None  # data=torchgeo: a LightningDataModule by _target_ (fit/test only)
    in_channels: int | None = None  # data=torchgeo: bands of the datamodule's images
    ignore_index: int | None = None  # data=torchgeo: the mask value meaning "no label" (skipped)

    def __post_init__(self) -> None:
        check_data_ranges(self)


@dataclass
class PreprocessingConfig:
    """How the scene becomes the model's input stack."""

    indices: list[str] = field(default_factory=list)  # appended after the bands
    normalization: str = "standard"  # standard, median_std, minmax, percentile, constant, per_chip, none
    expressions: Any = None  # (a mapping) user indices: name → arithmetic over band names
    index_constants: Any = None  # (a mapping) constants of catalogue indices, e.g. {L: 0.5}
    keep_bands: list[str] | None = None  # bands kept in the stack; null keeps all (indices see all)
    norm_per_band: bool = True  # minmax/percentile: per band, or one range over every band
    norm_range: list[float] = field(default_factory=lambda: [0.0, 1.0])  # minmax/percentile target
    norm_percentiles: list[float] = field(default_factory=lambda: [2.0, 98.0])  # percentile clip bounds
    norm_constant: float = 10000.0  # constant: the divisor
    norm_samples: int = 1_000_000  # median/percentile: training pixels sampled (exact below this)
    window: int = 1024  # processing window side in px (memory ∝ window²; output unchanged)
    cog: bool = False  # write prepared.tif as a Cloud-Optimized GeoTIFF with overviews


@dataclass
class AugmentationConfig:
    """Train-time augmentation, applied per sample on the device."""

    name: Augmentation = Augmentation.none  # 'none', 'd4' (random per sample) or 'd4_expand' (deterministic copies)
    expand_ops: list[D4Op] = field(
        default_factory=lambda: [D4Op.rot90, D4Op.rot180, D4Op.rot270, D4Op.flip_h, D4Op.flip_v, D4Op.transpose]
    )  # d4_expand: each op adds a transformed copy of every training chip
    brightness: float = 0.0  # max per-sample offset added to the normalized bands
    noise_std: float = 0.0  # std of per-pixel Gaussian noise on the normalized bands
    copy_paste: Any = "auto"  # share of training chips that get the labelled pixels of another chip of the batch
    #   pasted on (with their labels), so that labelled classes meet at image borders (issue 20: the halo of
    #   sparse polygons); 'auto': 1.0 (pipeline.learning.COPY_PASTE_SPARSE) when the labels are sparse
    #   (geo/label_layout.py), else 0
    copy_paste_edge: float = 0.0  # softness of the pasted border: Gaussian sigma in pixels of the paste's blend
    #   weight, labels by majority (alpha >= 0.5), so that training borders are mixed pixels like a sensor's;
    #   0: sharp, the default (0.5 px measured worse on the demo: README "Measured: recipes against the halo")
    teacher: Any = False  # teacher labels: a per-pixel LightGBM forest, fitted on the training chips' polygon
    #   pixels, labels the unlabelled pixels of the training chips where it is sure (ml/teacher.py; val and test
    #   keep the polygons only); 'auto': on for sparse labels (geo/label_layout.py) and a network, else off;
    #   true / false (the default: it wins on the demo but loses on both real scenes measured, see the README)
    teacher_confidence: float = 0.8  # the least class probability of a teacher call that becomes a label
    teacher_reach_px: int = 3  # teacher labels only within this many px of a polygon label (0: everywhere)
    teacher_weight: float = 1.0  # loss weight of a teacher label, a polygon label's being 1; in (0, 1]


@dataclass
class PredictConfig:
    """Whole-scene prediction by overlapping windows."""

    window: int | None = None  # default: data.chip_size
    overlap: float = 0.5  # fraction of the window shared by neighbours
    batch_size: int = 16
    checkpoint: str | None = None  # for stages without 'fit': the weights to use
    image: Any = None  # new scene(s) to classify, prepared with the checkpoint's stats: a raster, a glob
    #   (scenes/*.tif: each match a scene), a date → file mapping (a time stack), or a LIST OF SCENES, each a
    #   raster, a nested list of tiles to mosaic ([[a1.tif, a2.tif]]) or a mapping; several scenes write
    #   scenes/<name>/prediction.tif etc., and scenes finished by an earlier launch are skipped
    labels: str | None = None  # reference labels of predict.image: scores → prediction_metrics.json
    blend: Blend = Blend.hann  # 'hann' (smooth weights) or 'center' (overlap-tile: window centres only)
    probabilities: ProbabilityFormat = ProbabilityFormat.none  # float16 or uint8 (value/254, 255 nodata):
    #   prediction_proba.tif, the softmax of the blended logits
    entropy: bool = False  # also write prediction_entropy.tif (0 certain .. 1 uniform)
    tta: bool = False  # average over the 8 dihedral transforms of each window (8x compute)
    amp: bool = False  # bfloat16 autocast around the forward pass
    cog: bool = True  # write the outputs as Cloud-Optimized GeoTIFFs with overviews
    stream: bool = True  # predict.image: prepare the raw bands on the network's device as they are read (the same
    #   class map); false: write the prepared stack predict_input/prepared.tif first, then predict from it
    polygons: list[str] | None = None  # classes to vectorize into prediction_polygons.gpkg
    min_area_ha: float = 0.5  # polygons smaller than this (hectares) are dropped
    prior_shift: Any = "auto"  # decide the map with the SCENE's class shares, estimated by EM from the network's
    #   posteriors on a sample of windows (ml/prior_shift.py), not the training polygons' shares; 'auto': on when
    #   the training labels are sparse and no teacher labels were added; true; false. prediction_priors.json
    mmu_ha: float = 0.0  # minimum mapping unit: prediction.tif is sieved (8-connected patches under this many hectares
    #   take their surroundings' class) before polygons and assessment; recorded in provenance. 0: off; PRODES 6.25

    def __post_init__(self) -> None:
        check_predict_ranges(self)


DEMO_REFERENCE = "demo"  # assess.reference=demo (data=demo only): the demo scene's wall-to-wall truth


@dataclass
class AssessConfig:
    """Stage ``assess``: map accuracy and error-adjusted area from a stratified random sample
    (Olofsson et al. 2014; Stehman 2014). Writes assessment_sample.gpkg/.csv and assessment.json."""

    map: str | None = None  # the class map to assess; default the run's prediction.tif
    strata: str | None = None  # a raster of integer strata on the map's area; default the map classes
    reference: str | None = AUTO_REFERENCE  # labels the sample automatically: vector or label raster, read like
    #   data.labels; 'demo' (with data=demo): the demo scene's wall-to-wall truth (demo_reference.tif); 'auto' (the
    #   default): 'demo' on the built-in demo scene (its map is assessed by default), none otherwise; null: none
    sample: str | None = None  # a labelled sample to analyse: assessment_sample.gpkg/.csv with ref_class filled
    target_se: float = 0.01  # standard error of overall accuracy the sample size aims at (Olofsson eq. 13)
    users_accuracy: Any = 0.8  # conjectured user's accuracy: one value or {class (or stratum): value}
    allocation: Allocation = Allocation.min_per_stratum  # proportional, equal, or min_per_stratum (the rest prop.)
    min_per_stratum: int = 50  # min_per_stratum: units in every stratum at least (or all its pixels)
    sample_size: int | None = None  # total units, overriding the size from target_se

    def __post_init__(self) -> None:
        check_assess_ranges(self)


@dataclass
class ExportConfig:
    """Stage ``export``: the trained model written to travel, as ``deepgeo-export`` writes it, into the run's
    ``export/`` folder (model.onnx: raw bands in, QGIS Deepness and onnxruntime; model.pt2: torch.export;
    mlm.json: a STAC MLM item). Off unless ``formats`` names some: the default cycle then ends with it."""

    formats: list[str] = field(default_factory=list)  # of onnx, pt2, mlm; e.g. [onnx,mlm]; empty: no export
    tile: int | None = None  # the exported graph's tile side in pixels; default the checkpoint's chip size

    def __post_init__(self) -> None:
        check_export_ranges(self)


@dataclass
class TrainConfig:
    """Training behaviour around the Trainer: checkpoints, resume, early stopping, speed."""

    monitor: str = "val_f1_macro"  # the score that picks best.ckpt and stops early
    monitor_mode: MonitorMode = MonitorMode.auto  # max, min, or auto: min for a loss (a name with 'loss')
    early_stopping_patience: int | None = None  # epochs without improvement before stopping
    resume: bool = True  # continue from checkpoints/last.ckpt when the run dir holds one
    compile: bool = False  # torch.compile the network
    channels_last: bool = False  # channels-last memory format (faster with AMP on GPUs)


@dataclass
class PathsConfig:
    """Where inputs are cached and runs are written."""

    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class RunConfig:
    """The whole composed run."""

    data: DataConfig = MISSING
    preprocessing: PreprocessingConfig = MISSING
    augmentation: AugmentationConfig = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    loss: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    assess: AssessConfig = field(default_factory=AssessConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    paths: PathsConfig = MISSING
    logger: Any = None
    callbacks: Any = None  # name → a Lightning callback's `_target_` node (conf/callbacks/)
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))  # the stages to run, in this order; a
    #   subset reuses the cached outputs of the others (the data check runs before any data stage); 'assess' joins
    #   the default list when assess.reference or assess.sample is set, 'export' ends it when export.formats is
#   set; stages=[assess] assesses an existing map
    test_split: Split = Split.test  # the chips the test stage scores (e.g. val, to evaluate a checkpoint)
    seed: int = 42  # seeds numpy, torch and the chip sampler: the same command gives the same metrics
    experiments: Any = None

    def __post_init__(self) -> None:
        """``assess.reference=auto`` resolved once, with the data it depends on (:func:`assess_reference`)."""
        if isinstance(self.assess, AssessConfig) and self.assess.reference == AUTO_REFERENCE:
            self.assess.reference = assess_reference(self.assess, self.data if self.data is not MISSING else None)


def monitor_direction(monitor: str, mode: str = "auto") -> str:
    """``min`` or ``max``: ``mode``, or for ``auto`` min when ``monitor`` is a loss, else max."""
    mode = str(mode)
    if mode != "auto":
        return mode
    return "min" if "loss" in str(monitor) else "max"


def register_resolvers() -> None:
    """The resolvers the YAML files use: ``${monitor_mode:${train.monitor},${train.monitor_mode}}``."""
    if not OmegaConf.has_resolver("monitor_mode"):
        OmegaConf.register_new_resolver("monitor_mode", monitor_direction)


def register_configs() -> None:
    """Register the schemas under the names the YAML defaults lists refer to, and the resolvers."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    # Kept in their own group so that `deepgeo --help` lists only real options.
    cs.store(group="schema", name="data", node=DataConfig, package="data")
    cs.store(group="schema", name="preprocessing", node=PreprocessingConfig, package="preprocessing")
    cs.store(group="schema", name="augmentation", node=AugmentationConfig, package="augmentation")
    cs.store(group="schema", name="paths", node=PathsConfig, package="paths")
