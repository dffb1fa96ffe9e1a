"""The runner's parts in-process: options, loading, applying config, and its imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

from runners.python.config import ConfigRefused, Configurator
from runners.python.loader import LoadError, builtin_module, find_entry, load, load_script
from runners.python.options import OptionError, RunnerOptions
from runners.python.runner import Runner
from supervisor.contract import ContractEnv, ProgramChannels
from supervisor.contract.bsread import Decoder, Encoder

RUNNER = Path(__file__).resolve().parents[4] / "runners" / "python"


def test_options_take_only_runner_keys_and_none_means_default() -> None:
    """User keys pass through untouched; a None value keeps the default (CamServer's rule)."""
    options = RunnerOptions.from_config({"gain": 3, "abort_on_error": None, "queue_size": 2})
    assert options == RunnerOptions(queue_size=2)


@pytest.mark.parametrize(
    ("config", "quoted"),
    [
        ({"abort_on_error": "maybe"}, "abort_on_error='maybe'"),
        ({"output_header_compression": "gzip"}, "output_header_compression='gzip'"),
        ({"queue_size": 0}, "queue_size=0"),
    ],
)
def test_invalid_option_error_quotes_key_and_value(config: dict, quoted: str) -> None:
    """An invalid runner option raises OptionError naming the key and the bad value."""
    with pytest.raises(OptionError, match=quoted):
        RunnerOptions.from_config(config)


def test_every_option_has_a_description() -> None:
    """Each runner option documents itself (schemas and docs are generated from it)."""
    assert all(field.description for field in RunnerOptions.model_fields.values())


def test_scripts_with_the_same_name_load_as_separate_modules(tmp_path: Path) -> None:
    """Two registry scripts called alike never share a module, and their folder is importable."""
    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"helper_{folder}.py").write_text(f"VALUE = {value}\n")
        (tmp_path / folder / "pipe.py").write_text(
            f"from helper_{folder} import VALUE\n"
            "def process(data, pulse_id, timestamp, parameters):\n    return VALUE\n"
        )
    first, second = (load(script=str(tmp_path / f / "pipe.py")) for f in ("a", "b"))
    assert (first.function(None, 0, None, None), second.function(None, 0, None, None)) == (1, 2)
    assert first.function.__module__ != second.function.__module__
    for folder in ("a", "b"):
        sys.path.remove(str(tmp_path / folder))


def test_process_image_is_preferred_over_process(tmp_path: Path) -> None:
    """A module with both functions is a camera pipeline (CamServer's rule)."""
    script = tmp_path / "both.py"
    script.write_text("def process(*a): pass\ndef process_image(*a): pass\n")
    code = find_entry(load_script(script), "both")
    assert (code.kind, code.function.__name__) == ("camera", "process_image")
    sys.path.remove(str(tmp_path))


def test_module_without_entry_point_is_a_load_error() -> None:
    """A module defining no entry point fails to load, naming what it looked for."""
    with pytest.raises(LoadError, match="defines none of process_image, process, generate"):
        load(module="runners.python.stats")


def test_builtin_is_loaded_by_its_name_as_its_module() -> None:
    """--builtin NAME loads the module the table names; workers load that module again."""
    code = load(builtin="passthrough")
    assert code.target == ("module", "builtin_pipelines.passthrough")
    assert code.kind == "stream"
    assert builtin_module("beam_metrics") == "builtin_pipelines.beam_metrics"


@pytest.mark.parametrize("name", ["h5writer", "lib", "no_such_thing"])
def test_unknown_builtin_is_a_load_error_naming_the_known_ones(name: str) -> None:
    """A name missing from the table is refused before anything is imported."""
    with pytest.raises(LoadError) as info:
        load(builtin=name)
    message = str(info.value)
    assert message.startswith(f"unknown builtin {name!r}; known builtins: beam_metrics, ")
    assert "h5_writer" in message


def _configurator(configure=None) -> Configurator:
    module = type(sys)("user")
    module.process = lambda *args: None
    if configure is not None:
        module.configure = configure
    return Configurator(find_entry(module, "user"))


def test_accepted_update_changes_the_same_parameters_dict() -> None:
    """An update mutates the one live dict, so holders of it see the change."""
    configurator = _configurator()
    live = configurator.parameters
    configurator.apply({"a": 1, "b": 2})
    configurator.apply({"a": 5})
    assert configurator.parameters is live
    assert live == {"a": 5}


def test_refused_update_leaves_parameters_and_options_unchanged() -> None:
    """A refusal by configure() or by a runner option changes nothing."""

    def configure(parameters: dict) -> None:
        if parameters.get("bad"):
            raise RuntimeError("bad is set")

    configurator = _configurator(configure)
    configurator.apply({"a": 1, "queue_size": 3})
    with pytest.raises(ConfigRefused, match="RuntimeError: bad is set"):
        configurator.apply({"a": 2, "bad": True})
    with pytest.raises(ConfigRefused, match="queue_size='many'"):
        configurator.apply({"a": 3, "queue_size": "many"})
    assert configurator.parameters == {"a": 1, "queue_size": 3}
    assert configurator.options.queue_size == 3


def _module_with_defaults(defaults: object) -> object:
    module = type(sys)("writer")
    module.process = lambda *args: None
    module.RUNNER_DEFAULTS = defaults
    return module


def test_the_codes_runner_defaults_apply_unless_the_config_sets_the_key() -> None:
    """A module's RUNNER_DEFAULTS (a writer's deep queue) replace the runner's own defaults;
    the config still overrides them, and None in the config means the module's default."""
    configurator = Configurator(find_entry(_module_with_defaults({"queue_size": 200}), "writer"))
    assert configurator.apply({"a": 1}).queue_size == 200
    assert configurator.apply({"queue_size": None}).queue_size == 200
    assert configurator.apply({"queue_size": 5}).queue_size == 5
    assert configurator.apply({}).queue_size == 200
    assert configurator.parameters == {}  # the defaults are options, not the user's keys


@pytest.mark.parametrize(
    ("defaults", "words"),
    [
        ({"colour": 1}, "['colour'] are not runner options"),
        ({"queue_size": 0}, "queue_size=0"),
        ([("queue_size", 2)], "RUNNER_DEFAULTS must be a dict"),
    ],
)
def test_bad_runner_defaults_are_a_load_error(defaults: object, words: str) -> None:
    """A module whose RUNNER_DEFAULTS the runner would refuse does not load, saying why."""
    with pytest.raises(LoadError, match="writer: RUNNER_DEFAULTS") as caught:
        find_entry(_module_with_defaults(defaults), "writer")
    assert words in str(caught.value)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_runner_imports_only_the_contract_numpy_zmq_and_stdlib() -> None:
    """The runner stays light: no supervisor core, no pydantic or other third-party imports;
    cffi only for C extensions, imported inside the functions that build or load one."""
    allowed_roots = set(sys.stdlib_module_names) | {"numpy", "zmq", "runners"}
    for path in sorted(RUNNER.glob("*.py")):
        for name in _imports(path):
            ok = name.split(".")[0] in allowed_roots or name == "supervisor.contract"
            ok = ok or name.startswith("supervisor.contract.")
            ok = ok or (path.name == "extension.py" and name == "cffi")
            assert ok, f"{path.name} imports {name}"
    top_level = ast.parse((RUNNER / "extension.py").read_text()).body
    imported = {a.name for node in top_level if isinstance(node, ast.Import) for a in node.names}
    assert "cffi" not in imported


class _CapturingSocket:
    """Stands in for the OUTPUT socket and keeps what the runner sends."""

    def __init__(self) -> None:
        self.sent: list[list] = []

    def send_multipart(self, frames: list, flags: int = 0, copy: bool = True) -> None:
        assert not copy
        self.sent.append(frames)


def test_passthrough_sends_the_received_image_memory_without_copying() -> None:
    """An image passed through goes out as a view of the received frame, not a copy."""
    module = type(sys)("user")
    module.process = lambda data, pulse_id, timestamp, parameters: {"image": data["image"]}
    configurator = Configurator(find_entry(module, "user"))
    configurator.apply({})
    context = zmq.Context()
    env = ContractEnv(instance="t", run=0)
    channels = ProgramChannels(env, context)
    runner = Runner(env, context, channels, configurator)
    output = runner._output = _CapturingSocket()
    image = np.arange(512 * 512, dtype=np.uint16).reshape(512, 512)
    frames = [zmq.Frame(bytes(f)) for f in Encoder().encode({"image": image}, 1, (1, 2))]
    message = Decoder().decode(frames)
    assert runner._process(message.data, message.pulse_id, message.global_timestamp) is None
    (sent,) = output.sent
    received = np.frombuffer(frames[2].buffer, dtype=np.uint16)
    assert np.shares_memory(np.frombuffer(sent[2], dtype=np.uint16), received)
    assert runner.stats.messages_out == 1
    channels.close()
    context.term()
