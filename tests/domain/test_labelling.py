from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from inspectloop.domain.labelling import KNOWN_ROLES, LabellingPolicy
from inspectloop.errors import WorkspaceError
from inspectloop.workspace import CONFIG_NAME, init_workspace, open_workspace


@pytest.mark.parametrize("annotator, source, role", [
    ("import", "import", "import"),
    ("ana", "reviewer", "reviewer"),
    ("ana", "recalibration", "reviewer"),  # any source other than an import is a person's word
    ("qe-bo", "reviewer", "quality_engineer"),  # named in the policy
    ("qe-bo", "settled", "settled"),  # a settle decision is settled whoever makes it
])
def test_the_role_of_an_annotation(annotator: str, source: str, role: str) -> None:
    policy = LabellingPolicy(annotators={"qe-bo": "quality_engineer"})
    assert policy.role(annotator, source) == role


def test_default_order_and_roles_left_out_rank_last() -> None:
    assert [LabellingPolicy().rank(r) for r in KNOWN_ROLES] == [0, 1, 2, 3]
    policy = LabellingPolicy(roles=["settled", "reviewer"])
    assert policy.rank("reviewer") < policy.rank("import") == policy.rank("quality_engineer") == 2


@pytest.mark.parametrize("config", [{"roles": ["settled", "supervisor"]}, {"annotators": {"ana": "boss"}},
                                    {"roles": ["reviewer", "reviewer"]}])
def test_unknown_or_repeated_roles_are_refused_naming_the_known_ones(config: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="known: settled, quality_engineer, reviewer, import|twice"):
        LabellingPolicy(**config)  # type: ignore[arg-type]


def test_a_workspace_config_with_an_unknown_role_is_refused(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws").close()
    path = tmp_path / "ws" / CONFIG_NAME
    config = yaml.safe_load(path.read_text())
    assert config["labelling"]["roles"] == list(KNOWN_ROLES)  # written out, so a plant can see and edit it
    config["labelling"]["roles"] = ["settled", "foreman", "reviewer"]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(WorkspaceError, match="unknown role 'foreman'.*known: settled, quality_engineer"):
        open_workspace(tmp_path / "ws")
