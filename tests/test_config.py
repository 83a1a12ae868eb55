"""Recipe configs: defaults, the shipped recipe, and one exact line for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval_kd.config import (
    EvalConfig,
    RecipeConfig,
    TrainConfig,
    load_config,
)
from retrieval_kd.errors import ConfigError, RkdError
from retrieval_kd.train.args import check_trainer_args

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.name == "recipe"
    assert cfg.source == str(tmp_path / "recipe.toml")
    assert cfg.data.to_json() == {"train": "beir/scifact/train", "eval": "beir/scifact/test", "dev": 0.0}
    assert cfg.teacher.to_json() == {
        "kind": "bi-encoder",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "batch_size": 64,
        "max_length": None,
        "dtype": "float32",
        "device": "auto",
        "options": {},
        "store": None,
        "members": [],
        "normalisation": "zscore",
        "weights": None,
        "tune": False,
        "tune_step": 0.1,
    }
    assert cfg.mine.to_json() == {
        "kind": "dense",
        "model": None,
        "negatives": 30,
        "batch_size": 32,
        "max_seq_length": None,
        "index": {},
        "reuse": [],
        "absolute_margin": None,
        "relative_margin": None,
    }
    assert cfg.student.to_json() == {
        "kind": "dense",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "num_layers": None,
        "max_seq_length": None,
        "options": {},
    }
    assert cfg.train.to_json() == {
        "loss": "kl",
        "loss_options": {},
        "negatives": 7,
        "negative_pool": None,
        "epochs": 1.0,
        "batch_size": 32,
        "lr": 5e-5,
        "warmup": 0.1,
        "weight_decay": 0.01,
        "seed": 42,
        "max_steps": -1,
        "bf16": False,
        "deterministic": True,
        "max_queries": None,
        "save_steps": 200,
        "save_total_limit": 2,
        "args": {},
    }
    assert cfg.index.to_json() == {"kind": None, "batch_size": 32, "options": {}, "dtype": "float32"}
    assert cfg.eval.to_json() == {
        "metrics": ["ndcg@10", "recall@100", "mrr@10"],
        "k": 100,
        "max_queries": None,
        "systems": [],
        "stat_test": "student",
        "correction": "holm",
    }
    assert cfg.eval.metrics == ("ndcg@10", "recall@100", "mrr@10")
    assert RecipeConfig().train == TrainConfig()


def test_shipped_recipe() -> None:
    cfg = load_config(CONFIGS / "scifact-dense-distill.toml")
    assert cfg.name == "scifact-dense-distill"
    assert cfg.mine.index == {"factory": "Flat"}
    assert cfg.index.options == {"factory": "Flat"}
    assert (cfg.student.num_layers, cfg.train.negatives, cfg.train.negative_pool) == (3, 7, 30)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (2.0, 8, 2e-4)
    assert cfg.train.loss_options == {"student_temperature": 0.05, "teacher_temperature": 0.05}


def test_int_is_a_float_and_fingerprints_agree(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[train]\nepochs = 2\nlr = 1\n"))
    assert (cfg.train.epochs, cfg.train.lr) == (2.0, 1.0)
    assert isinstance(cfg.train.epochs, float) and isinstance(cfg.train.lr, float)
    same = load_config(write(tmp_path, "[train]\nepochs = 2.0\nlr = 1.0\n"))
    assert cfg.section_hash("train") == same.section_hash("train")
    assert cfg.section_hash("train") != cfg.section_hash("train", "eval")
    assert cfg.section_hash("train") != load_config(write(tmp_path, "[train]\nepochs = 3\n")).section_hash(
        "train"
    )


def test_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    with pytest.raises(ValueError, match="frozen"):
        cfg.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        cfg.train = TrainConfig()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        # ranges
        ("[data]\ndev = 1.0", "[data].dev: expected a number < 1, got 1.0"),
        ("[data]\ndev = -0.1", "[data].dev: expected a number >= 0, got -0.1"),
        ("[teacher]\nbatch_size = 0", "[teacher].batch_size: expected an integer >= 1, got 0"),
        ("[teacher]\nmax_length = 0", "[teacher].max_length: expected an integer >= 1, got 0"),
        (
            '[teacher]\ndtype = "fp8"',
            "[teacher].dtype: expected one of 'float32', 'bfloat16', 'float16', got 'fp8'",
        ),
        (
            '[teacher]\ndevice = "gpu"',
            "[teacher].device: expected 'auto', 'cpu', 'cuda', 'cuda:N', 'xpu', 'xpu:N' or 'mps', got 'gpu'",
        ),
        ("[mine]\nnegatives = 0", "[mine].negatives: expected an integer >= 1, got 0"),
        ("[mine]\nbatch_size = -3", "[mine].batch_size: expected an integer >= 1, got -3"),
        ("[mine]\nmax_seq_length = 0", "[mine].max_seq_length: expected an integer >= 1, got 0"),
        ("[student]\nnum_layers = 0", "[student].num_layers: expected an integer >= 1, got 0"),
        ("[student]\nmax_seq_length = 0", "[student].max_seq_length: expected an integer >= 1, got 0"),
        ("[train]\nnegatives = 0", "[train].negatives: expected an integer >= 1, got 0"),
        ("[train]\nnegative_pool = 0", "[train].negative_pool: expected an integer >= 1, got 0"),
        ("[train]\nepochs = 0", "[train].epochs: expected a number > 0, got 0"),
        ("[train]\nepochs = -0.5", "[train].epochs: expected a number > 0, got -0.5"),
        ("[train]\nepochs = inf", "[train].epochs: expected a finite number, got inf"),
        ("[train]\nbatch_size = 0", "[train].batch_size: expected an integer >= 1, got 0"),
        ("[train]\nlr = 0", "[train].lr: expected a number > 0, got 0"),
        ("[train]\nlr = -1e-5", "[train].lr: expected a number > 0, got -1e-05"),
        ("[train]\nlr = nan", "[train].lr: expected a finite number, got nan"),
        ("[train]\nlr = inf", "[train].lr: expected a finite number, got inf"),
        ("[train]\nwarmup = -0.1", "[train].warmup: expected a number >= 0, got -0.1"),
        ("[train]\nweight_decay = -1", "[train].weight_decay: expected a number >= 0, got -1"),
        ("[train]\nseed = -1", "[train].seed: expected an integer >= 0, got -1"),
        ("[train]\nseed = 4294967296", "[train].seed: expected an integer <= 4294967295, got 4294967296"),
        ("[train]\nmax_steps = 0", "[train].max_steps: expected -1 (no limit) or an integer >= 1, got 0"),
        ("[train]\nmax_steps = -2", "[train].max_steps: expected -1 (no limit) or an integer >= 1, got -2"),
        ("[train]\nmax_queries = 0", "[train].max_queries: expected an integer >= 1, got 0"),
        ("[train]\nsave_steps = 0", "[train].save_steps: expected an integer >= 1, got 0"),
        ("[train]\nsave_total_limit = 0", "[train].save_total_limit: expected an integer >= 1, got 0"),
        ("[index]\nbatch_size = 0", "[index].batch_size: expected an integer >= 1, got 0"),
        ("[eval]\nk = 0", "[eval].k: expected an integer >= 1, got 0"),
        ("[eval]\nmax_queries = 0", "[eval].max_queries: expected an integer >= 1, got 0"),
        ("[eval]\nmetrics = []", "[eval].metrics: expected a non-empty list, got []"),
        ('[data]\ntrain = ""', "[data].train: expected a non-empty string, got ''"),
        ('[teacher]\nmodel = ""', "[teacher].model: expected a non-empty string, got ''"),
        # types
        ('[train]\nlr = "fast"', "[train].lr: expected a number, got 'fast'"),
        ("[train]\nlr = true", "[train].lr: expected a number, got True"),
        ("[train]\nbatch_size = 8.0", "[train].batch_size: expected an integer, got 8.0"),
        ('[train]\nbatch_size = "8"', "[train].batch_size: expected an integer, got '8'"),
        ("[train]\nbf16 = 1", "[train].bf16: expected true or false, got 1"),
        ("[train]\nloss = 3", "[train].loss: expected a string, got 3"),
        ("[train]\nloss_options = 3", "[train].loss_options: expected a table, got 3"),
        ("[train]\nargs = [1]", "[train].args: expected a table, got [1]"),
        ("[teacher]\noptions = 1", "[teacher].options: expected a table, got 1"),
        ('[mine]\nindex = "Flat"', "[mine].index: expected a table, got 'Flat'"),
        ("[mine]\nmodel = 1", "[mine].model: expected a string, got 1"),
        ("[index]\nkind = 1", "[index].kind: expected a string, got 1"),
        ('[eval]\nmetrics = "ndcg@10"', "[eval].metrics: expected a list, got 'ndcg@10'"),
        ('[eval]\nmetrics = ["ndcg@10", 3]', "[eval].metrics[1]: expected a string, got 3"),
        ('[data]\ntrain = ["a"]', "[data].train: expected a string, got ['a']"),
        ("train = 3", "[train]: expected a table, got 3"),
        ("name = 3", "name: expected a string, got 3"),
        # across sections
        (
            "[train]\nnegatives = 8\nnegative_pool = 4",
            "[train].negative_pool: expected an integer >= [train].negatives (8), got 4",
        ),
        ("[mine]\nnegatives = 5", "[mine].negatives: expected an integer >= [train].negatives (7), got 5"),
        # registries
        (
            '[teacher]\nkind = "bi"',
            "[teacher].kind = 'bi' is unknown; choose from {teachers}",
        ),
        ('[mine]\nkind = "bm52"', "[mine].kind = 'bm52' is unknown; choose from {students}"),
        ('[student]\nkind = "colbrt"', "[student].kind = 'colbrt' is unknown; choose from {students}"),
        (
            '[train]\nloss = "mse2"',
            "[train].loss = 'mse2' is unknown; "
            "choose from ['bce', 'kl', 'margin_mse', 'pairwise', 'preference']",
        ),
        ('[index]\nkind = "hnsw"', "[index].kind = 'hnsw' is unknown; choose from {indexes}"),
    ],
)
def test_one_line_per_bad_value(tmp_path: Path, toml: str, message: str) -> None:
    from retrieval_kd.indexes import INDEXES
    from retrieval_kd.students import STUDENTS
    from retrieval_kd.teachers import TEACHERS

    # the choices come from the registries, which grow as families are added
    names = {"indexes": INDEXES, "students": STUDENTS, "teachers": TEACHERS}
    for key, registry in names.items():
        message = message.replace("{" + key + "}", str(registry.names()))
    assert error(tmp_path, toml + "\n") == message


def test_unknown_metric(tmp_path: Path) -> None:
    assert error(tmp_path, '[eval]\nmetrics = ["ndgc@10"]\n').startswith(
        "[eval].metrics: unknown metric 'ndgc@10'; choose from ['f1', 'hit_rate',"
    )


def test_unknown_fields_and_sections(tmp_path: Path) -> None:
    assert error(tmp_path, "[train]\nlearning_rate = 1e-4\nepoch = 2\n") == (
        "[train]: unknown field(s) ['epoch', 'learning_rate']; valid fields: ['loss', 'loss_options', "
        "'negatives', 'negative_pool', 'epochs', 'batch_size', 'lr', 'warmup', 'weight_decay', 'seed', "
        "'max_steps', 'bf16', 'deterministic', 'max_queries', 'save_steps', 'save_total_limit', 'args']"
    )
    assert error(tmp_path, '[mine]\nfactory = "Flat"\n') == (
        "[mine]: unknown field(s) ['factory']; valid fields: ['kind', 'model', 'negatives', 'batch_size', "
        "'max_seq_length', 'index', 'reuse', 'absolute_margin', 'relative_margin']"
    )
    assert error(tmp_path, '[index]\nfactory = "Flat"\n') == (
        "[index]: unknown field(s) ['factory']; valid fields: ['kind', 'batch_size', 'options', 'dtype']"
    )
    assert error(tmp_path, "[trian]\n[evl]\n") == (
        "unknown section(s) ['evl', 'trian']; valid sections: "
        "['data', 'eval', 'index', 'mine', 'student', 'teacher', 'train'] and 'name'"
    )
    assert error(tmp_path, 'source = "x"\n').startswith("unknown section(s) ['source']")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'no.toml'}: no such config file$"):
        load_config(tmp_path / "no.toml")
    assert error(tmp_path, "[train\n").startswith("invalid TOML (")


def test_python_construction_is_checked_too() -> None:
    assert EvalConfig(metrics=("ndcg@10",)).metrics == ("ndcg@10",)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        TrainConfig(factory="Flat")  # type: ignore[call-arg]


def test_train_args_passthrough(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[train]\nlr = 1e-4\n[train.args]\ngradient_accumulation_steps = 4\nlr_scheduler_type = "cosine"\n',
    )
    cfg = load_config(path)
    assert cfg.train.args == {"gradient_accumulation_steps": 4, "lr_scheduler_type": "cosine"}
    check_trainer_args(cfg.train.args, str(path))  # accepted: both are TrainingArguments fields


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("learning_rate", "[train.args].learning_rate: set by rkd; use [train].lr"),
        (
            "per_device_train_batch_size",
            "[train.args].per_device_train_batch_size: set by rkd; use [train].batch_size",
        ),
        ("num_train_epochs", "[train.args].num_train_epochs: set by rkd; use [train].epochs"),
        ("data_seed", "[train.args].data_seed: set by rkd; use [train].seed"),
        ("save_strategy", "[train.args].save_strategy: set by rkd; use [train].save_steps"),
        ("save_total_limit", "[train.args].save_total_limit: set by rkd; use [train].save_total_limit"),
        ("warmup_steps", "[train.args].warmup_steps: set by rkd; use [train].warmup"),
        ("bf16", "[train.args].bf16: set by rkd; use [train].bf16"),
        ("output_dir", "[train.args].output_dir: set by rkd; use the stage's output folder (--out)"),
        (
            "gradient_acumulation_steps",
            "[train.args].gradient_acumulation_steps: not a TrainingArguments field; "
            "close matches: ['gradient_accumulation_steps', 'eval_accumulation_steps']",
        ),
        ("frobnicate", "[train.args].frobnicate: not a TrainingArguments field"),
    ],
)
def test_train_args_refused(key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_trainer_args({"gradient_accumulation_steps": 2, key: 1}, "r.toml")
    assert str(info.value) == f"r.toml: {message}"
    assert isinstance(info.value, RkdError)


def test_replace_checks_like_the_file() -> None:
    train = TrainConfig(lr=1e-4)
    assert train.replace(epochs=3, negatives=4) == TrainConfig(lr=1e-4, epochs=3.0, negatives=4)
    assert EvalConfig().replace(metrics=["mrr@10"]).metrics == ("mrr@10",)
    with pytest.raises(ConfigError) as info:
        train.replace(lr=0)
    assert str(info.value) == "[train].lr: expected a number > 0, got 0"
    with pytest.raises(ConfigError) as info:
        train.replace(learning_rate=1.0)
    assert str(info.value).startswith("[train]: unknown field(s) ['learning_rate']; valid fields: ['loss',")
