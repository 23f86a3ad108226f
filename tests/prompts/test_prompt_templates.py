import pytest

from studio.prompts.prompt_templates import PromptTemplates, fill_template, template_set_names


def test_built_in_sets_are_selectable_by_name():
    assert template_set_names() == ["object", "style"]
    objects = PromptTemplates.get("object")
    styles = PromptTemplates.get("style")
    assert objects.name == "object" and styles.name == "style"
    assert objects[0] == "a photo of a {}"
    assert "a rendering of a {}" in objects
    assert styles[0] == "a painting in the style of {}"
    for templates in (objects, styles):
        assert len(templates) > 10
        assert all(template.count("{}") == 1 for template in templates)
        assert len(set(templates)) == len(templates)


def test_fill_puts_the_placeholder_in_every_template():
    templates = PromptTemplates(["a photo of a {}", "{} with {braces}"])
    assert templates.fill("<cat-toy>") == ["a photo of a <cat-toy>", "<cat-toy> with {braces}"]
    # The placeholder goes in literally, braces and all.
    assert fill_template("a {}", "<{x}>") == "a <{x}>"
    with pytest.raises(ValueError, match="Received: ''"):
        templates.fill("")


def test_user_file_extends_a_built_in_set(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(
        "# my own templates\n\n  a photo of {} at the beach  \na photo of a {}\n",
        encoding="utf-8",
    )
    mine = PromptTemplates.from_file(path)
    assert mine.templates == ("a photo of {} at the beach", "a photo of a {}")
    assert PromptTemplates.get(str(path)) == mine
    combined = PromptTemplates.get("object") + str(path)
    # Duplicates are dropped, order kept.
    assert combined.templates == PromptTemplates.get("object").templates + ("a photo of {} at the beach",)
    assert combined.name == f"object + {path}"


def test_file_with_byte_order_mark_and_non_ascii(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffune photo de {} à Paris\n".encode("utf-8"))
    assert PromptTemplates.from_file(path).templates == ("une photo de {} à Paris",)


def test_bad_template_file_names_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("a photo of {}\n\na photo without placeholder\n")
    with pytest.raises(ValueError, match=r"'a photo without placeholder' \(line 3 of .*bad.txt\)"):
        PromptTemplates.from_file(path)
    path.write_text("{} and {}\n")
    with pytest.raises(ValueError, match="exactly once"):
        PromptTemplates.from_file(path)
    path.write_bytes(b"a photo of \xff{}\n")
    with pytest.raises(ValueError, match="UTF-8 text. Received: .*byte 0xff at offset 11"):
        PromptTemplates.from_file(path)
    path.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="at least one template"):
        PromptTemplates.from_file(path)


def test_unknown_names_and_bad_lists():
    with pytest.raises(ValueError, match=r"\['object', 'style'\].*Received: 'objects'"):
        PromptTemplates.get("objects")
    with pytest.raises(ValueError, match="Expected one of"):
        PromptTemplates.from_name("nope")
    with pytest.raises(TypeError, match="not one string"):
        PromptTemplates("a photo of {}")
    with pytest.raises(ValueError, match="at least one template"):
        PromptTemplates([])


def test_config_round_trip():
    templates = PromptTemplates(["a {}", "the {}"], name="mine")
    again = PromptTemplates.from_config(templates.get_config())
    assert again == templates and again.name == "mine"
