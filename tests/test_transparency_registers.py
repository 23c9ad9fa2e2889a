"""Register entries (``appliance notice registers``), each validated against the schema or field list
its register publishes (vendored, with licence and source commit, in tests/data/registers/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import pytest
import yaml

from appliance.cli import main
from appliance.config import load_config
from appliance.transparency import build_notice, notice_hash

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "registers"
EXAMPLE = ROOT / "examples" / "site.yaml"


def algoritmeregister_schema() -> Dict[str, Any]:
    """The Algoritmeregister's own config format (v1_0.json) as JSON Schema: types, lengths, required,
    permitted values; every field of the standard present, nothing else."""

    def prop(spec: Dict[str, Any]) -> Dict[str, Any]:
        if spec["type"] == "enum":
            return {"enum": spec["permitted_values"]}
        if spec["type"] == "array":
            if "items" in spec:
                items = spec["items"]
                return {"type": "array", "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {k: prop(v) for k, v in items.items()},
                    "required": [k for k, v in items.items() if v.get("required") is True]}}
            return {"type": "array", "items": {"enum": spec["permitted_values"]}}
        out: Dict[str, Any] = {"type": "string"}
        if "max_length" in spec:
            out["maxLength"] = spec["max_length"]
        return out

    fields = json.loads((DATA / "algoritmeregister-v1_0.json").read_text())["properties"]
    return {"type": "object", "additionalProperties": False, "required": list(fields),
            "properties": {k: prop(v) for k, v in fields.items()},
            "allOf": [{"properties": {k: {"minLength": 1}}} for k, v in fields.items()
                      if v.get("required") is True and v["type"] == "string"]}


def atrs_fields() -> List[Dict[str, str]]:
    rows = []
    for line in (DATA / "atrs-v3.0-template_table.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and re.match(r"^\d+(\.\d+)+$", cells[0]):
            rows.append({"attribute": cells[1].replace("<br>", ""), "category": cells[4], "type": cells[5],
                         "required": cells[-1]})
    return rows


ATRS_SECTIONS = {
    "Metadata": "metadata", "Title Information": "title_information", "Tier 1 Information": "tier_1_information",
    "Owner and Responsibility": "tier_2_owner_and_responsibility",
    "Description and Rationale": "tier_2_description_and_rationale",
    "Decision-making Process": "tier_2_decision_making_process",
    "Tool Specification": "tier_2_tool_specification", "Model Specification": "tier_2_model_specification",
    "Data Specification": "tier_2_data_specification",
    "Risks, mitigations and impact assessments": "tier_2_risks_mitigations_and_impact_assessments",
}
ASSIGNED_ON_PUBLICATION = {"id", "date_of_completion", "date_updated", "date_archived"}


def atrs_schema() -> Dict[str, Any]:
    """The ATRS v3.0 template as JSON Schema: one object per section (a list for model and data specs)."""
    sections: Dict[str, Dict[str, Any]] = {}
    for f in atrs_fields():
        key = ATRS_SECTIONS[f["category"]]
        s = sections.setdefault(key, {"type": "object", "additionalProperties": False, "properties": {},
                                      "required": []})
        if f["attribute"] in ASSIGNED_ON_PUBLICATION:
            s["properties"][f["attribute"]] = {"type": "null"}  # the register assigns it
        else:
            required = {"minLength": 1} if f["required"] == "TRUE" else {}
            s["properties"][f["attribute"]] = {"type": "string", **required}
        s["required"].append(f["attribute"])
    for key in ("tier_2_model_specification", "tier_2_data_specification"):
        sections[key] = {"type": "array", "minItems": 1, "items": sections[key]}
    return {"type": "object", "additionalProperties": False, "required": list(sections), "properties": sections}


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    out = tmp_path_factory.mktemp("registers")
    assert main(["notice", "registers", "--config", str(EXAMPLE), "-o", str(out)]) == 0
    return {p.name: json.loads(p.read_text()) for p in out.iterdir()}


def test_one_file_per_register_each_carrying_the_notice_and_config_hashes(entries: Dict[str, Any]) -> None:
    assert set(entries) == {"algoritmeregister.json", "atrs.json", "dtpr.json", "sensorregister.json"}
    notice = build_notice(load_config(EXAMPLE))
    for name, entry in entries.items():
        text = json.dumps(entry, ensure_ascii=False)
        assert notice_hash(notice) in text and notice.config_hash in text, name


def test_the_algoritmeregister_entry_fills_every_field_of_publication_standard_1_0(entries: Dict[str, Any]) -> None:
    entry = entries["algoritmeregister.json"]
    jsonschema.validate(entry, algoritmeregister_schema())
    assert entry["category"] == ["Openbare orde en veiligheid"] and entry["lang"] == "nld"
    assert entry["organization"] == load_config(EXAMPLE).transparency.operator_name


def test_the_algoritmeregister_check_rejects_an_overlong_name(entries: Dict[str, Any]) -> None:
    bad = {**entries["algoritmeregister.json"], "name": "x" * 101}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, algoritmeregister_schema())


def test_an_operator_name_over_the_registers_limit_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["transparency"]["operator_name"] = "Gemeente " + "Noorderhaaks " * 10
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert main(["notice", "registers", "--config", str(site), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{site}: transparency.operator_name:" in err and "100" in err
    assert not (tmp_path / "out").exists()


def test_the_atrs_record_has_every_tier_1_and_tier_2_field_of_the_v3_template(entries: Dict[str, Any]) -> None:
    fields = atrs_fields()
    assert len(fields) == 65 and {f["category"] for f in fields} == set(ATRS_SECTIONS)
    jsonschema.validate(entries["atrs.json"], atrs_schema())
    models = entries["atrs.json"]["tier_2_model_specification"]
    assert [m["model_name"] for m in models] == [m.name for m in build_notice(load_config(EXAMPLE)).models]


def test_the_dtpr_datachains_use_only_element_ids_of_dtprs_taxonomy(entries: Dict[str, Any]) -> None:
    taxonomy = json.loads((DATA / "dtpr-taxonomy.json").read_text())
    chain = entries["dtpr.json"]
    for name in ("device_chain", "ai_chain"):
        known = taxonomy[name]["categories"]
        for el in chain[name]["elements"]:
            assert el["element_id"] in known[el["category"]], (name, el)
    contexts = taxonomy["ai_chain"]["context_types"]
    for el in chain["ai_chain"]["elements"]:
        if el["category"] in contexts:
            assert el.get("context_type_id") in contexts[el["category"]], el
    assert chain["ai_chain"]["version"] == taxonomy["ai_chain"]["version"]
    ids = {el["element_id"] for el in chain["device_chain"]["elements"]}
    assert {"de_identified_video", "person_detection", "aggregated"} <= ids
    assert "anomaly_detection" in {el["element_id"] for el in chain["ai_chain"]["elements"]}


def test_the_sensor_register_entry_is_valid_against_the_wecity_schema(entries: Dict[str, Any]) -> None:
    schema = json.loads((DATA / "wecity-sensorregister.schema.json").read_text())
    entry = entries["sensorregister.json"]
    jsonschema.validate(entry, schema)
    assert set(entry) <= set(schema["properties"])
    assert entry["type"] == "camera/optisch" and entry["verwerkt persoonsgegevens"] is True


def test_the_page_folder_carries_the_register_files(tmp_path: Path) -> None:
    assert main(["notice", "page", "--config", str(EXAMPLE), "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "registers").iterdir()) == [
        "algoritmeregister.json", "atrs.json", "dtpr.json", "sensorregister.json"]
    assert 'href="registers/atrs.json"' in (tmp_path / "index.html").read_text()
