"""No module picks behaviour by comparing another module's names: methods, model variants and
streams declare what they need on their registry entries (Method, Variant, StreamKind), and only
the module that owns a registry reads its own names."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "comet_cl"
# name group -> (the names, the modules that own them)
GROUPS = {
    "method": ("naive|joint|ewc|si|lwf|replay|derpp|agem|supervised",
               ("strategies.py", "methods/")),
    "variant": ("dense|comet|smaller|dropout|topk|bernoulli|smoe", ("models/", "routing.py")),
    "stream": ("mnist|fashion|cifar|split|permuted", ("data.py", "catalog.py", "streams.py")),
}


def comparison(names: str) -> re.Pattern:
    return re.compile(rf"""(==|!=|\bin)\s*["']({names})[\w-]*["']|["']({names})[\w-]*["']\s*(==|!=|\bin\b)""")


def offenders() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        lines = path.read_text().splitlines()
        for group, (names, owners) in GROUPS.items():
            if rel.startswith(owners):
                continue
            pattern = comparison(names)
            for n, line in enumerate(lines, 1):
                if pattern.search(line.split("#", 1)[0]):
                    found.append(f"comet_cl/{rel}:{n} ({group} name): {line.strip()}")
    return found


def test_no_module_compares_another_modules_names():
    bad = offenders()
    assert not bad, "behaviour chosen by another module's names:\n" + "\n".join(bad)


def test_the_check_catches_a_name_comparison():
    assert comparison(GROUPS["variant"][0]).search('if cfg["model"]["variant"] == "smoe":')
    assert comparison(GROUPS["method"][0]).search('joint = preset.method == "joint"')
    assert comparison(GROUPS["stream"][0]).search('if "cifar" in dataset:')
    assert not comparison(GROUPS["method"][0]).search("if method.is_joint:")


def test_every_model_variant_and_arch_has_a_design_label_for_the_report():
    """The report labels the paper's design and this project's extensions from the light
    catalog; it must name exactly the registries' entries."""
    from comet_cl.catalog import ARCH_DESIGN, VARIANT_DESIGN
    from comet_cl.models import MODELS, VARIANTS
    assert set(VARIANT_DESIGN) == set(VARIANTS)
    assert set(ARCH_DESIGN) == set(MODELS)
