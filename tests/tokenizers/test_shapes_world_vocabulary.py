from studio.datasets.shapes_world import ShapesWorld
from studio.tokenizers import CLIPTokenizer
from studio.tokenizers.shapes_world_vocabulary import learn_merges
from studio.tokenizers.shapes_world_vocabulary import load_shapes_world_vocabulary
from studio.tokenizers.shapes_world_vocabulary import shapes_world_tokenizer


def test_shipped_merges_are_learned_from_the_world_words():
    _, merges = load_shapes_world_vocabulary()
    assert merges == learn_merges(ShapesWorld.vocabulary_words())


def test_every_world_word_is_one_token():
    tokenizer = shapes_world_tokenizer()
    for word in ShapesWorld.vocabulary_words():
        ids = tokenizer.encode(word)
        assert len(ids) == 3, (word, ids)  # start, word, end


def test_other_text_still_tokenizes_byte_by_byte():
    tokenizer = shapes_world_tokenizer()
    assert len(tokenizer.encode("zebra")) == 2 + 5


def test_placeholders_and_config_round_trip():
    tokenizer = shapes_world_tokenizer()
    [new_id] = tokenizer.add_placeholder_tokens("<cross>")
    assert new_id == len(load_shapes_world_vocabulary()[0])
    rebuilt = CLIPTokenizer.from_config(tokenizer.get_config())
    prompt = "a green <cross> on a white background"
    assert (rebuilt([prompt]) == tokenizer([prompt])).all()
    assert new_id in tokenizer([prompt])[0]
    assert tokenizer([prompt]).shape == (1, 16)
