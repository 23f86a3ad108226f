import pytest

from studio.prompts.dreambooth_prompts import (
    class_prompt,
    class_subject,
    indefinite_article,
    instance_prompt,
    instance_subject,
)


def test_instance_and_class_prompts():
    assert instance_prompt("sks", "dog") == "a photo of sks dog"
    assert class_prompt("dog") == "a photo of a dog"
    assert class_prompt("apple") == "a photo of an apple"
    assert instance_prompt("sks", "  teddy   bear ") == "a photo of sks teddy bear"
    assert class_prompt("dog", template="a painting of {}") == "a painting of a dog"
    assert instance_subject("sks", "dog") == "sks dog"
    assert class_subject("owl") == "an owl"


def test_article_follows_the_first_letter():
    assert [indefinite_article(w) for w in ("dog", "Apple", "umbrella", "cat")] == [
        "a", "an", "an", "a",
    ]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="Received: identifier='s k s'"):
        instance_prompt("s k s", "dog")
    with pytest.raises(ValueError, match="Received: identifier=''"):
        instance_prompt("", "dog")
    with pytest.raises(ValueError, match="Received: class_noun='  '"):
        class_prompt("  ")
    with pytest.raises(ValueError, match="Received: template='a photo'"):
        class_prompt("dog", template="a photo")
