"""Textual inversion: learn new token vectors that make Stable Diffusion draw a concept."""

import os
import warnings

import numpy as np
from keras import ops

from studio.embeddings.backbone_with_embeddings import published_text_encoder_hash
from studio.embeddings.placeholder_embedding import PlaceholderEmbedding
from studio.errors import InvalidInputError, StudioWarning
from studio.trainers.diffusion_trainer import IMAGE_INPUT_KEYS, DiffusionTrainer, describe_batch
from studio.trainers.distributed.replica_context import replica_share, sum_over_replicas
# The learned vectors' file in a run folder and in each checkpoint.
from studio.trainers.run.run_directory import EMBEDDING_FILE

# An initializer of more tokens than this is not a word the model knows
# (CLIP splits "zzqqxxword" into 10 pieces); training starts far from it.
MAX_INITIALIZER_PIECES = 2


class TextualInversionTrainer(DiffusionTrainer):
    """Trains placeholder token vectors on a frozen `StableDiffusionBackbone`.

    Each placeholder token (`"<cat-toy>"`) gets `num_vectors` new token ids
    in the tokenizer and as many new vectors, started from its initializer
    word. Only those vectors are trained: they live in a small float32
    variable joined to the frozen vocabulary table (`PlaceholderEmbedding`),
    so gradients and optimizer state are `(new vectors, width)`. The text
    encoder, UNet and VAE are frozen (`trainable = False`) and never
    written.

    Initializers: a word CLIP splits into `k` tokens ("cat-toy" -> 3)
    starts a placeholder with `num_vectors == k` from those `k` vectors, one
    each, in order; with any other count every vector starts at the mean of
    the `k` vectors.

    The model's `call` does the noising, text encoding and UNet and returns
    `(prediction, target, weights)`; `compute_loss` scores it. So Keras' own
    per-backend `train_step` computes the gradients, compiles the step (XLA
    or jit), applies loss scaling (`mixed_float16`: `compile` wraps the
    optimizer in a `LossScaleOptimizer`, which skips non-finite steps) and
    gradient accumulation (the optimizer's `gradient_accumulation_steps`).
    Noise and timesteps come from the trainer's `seed_generator`, whose state
    is a variable of the model: checkpoints save it, and a resumed run draws
    the same numbers as an uninterrupted one.

    Data parallel (built in a `tf.distribute.MirroredStrategy` scope, or
    under `keras.distribution.DataParallel`; see `DataParallelDevices`):
    one step on a global batch split evenly across devices equals one
    single-device step on that batch, draws included (each example gets
    the same noise and timestep; `replica_context`).

    Batches are dicts with `"token_ids"` (int `(batch, sequence_length)`)
    and one of: `"moments"` (the VAE encoder's mean and log-variance, as the
    latent cache stores them; latents are sampled in the step, no VAE call),
    `"images"` (`[-1, 1]`, encoded by the frozen VAE every step), or
    `"latents"` (already sampled and scaled).

    Args:
        backbone: a `studio.models.StableDiffusionBackbone`. Its tokenizer
            gets the placeholder tokens (unless it already has them, with
            the same number of ids, as the last ids); its networks are set
            to `trainable = False`. Under mixed precision it may be built
            in the half-precision policy itself (`"float16"`,
            `"bfloat16"`): nothing of it trains, so no float32 weights are
            needed (`studio train` does this); `precision` is then the
            mixed policy it computes as, `weights_dtype` the half one.
        placeholder_tokens: str or list of str, e.g. `"<cat-toy>"`.
        initializer_words: str or list of str, one per placeholder: the
            word or phrase whose vectors start the placeholder's.
        num_vectors: int or list of int, vectors per placeholder (>= 1).
        min_snr_gamma: float or None, min-SNR loss weighting (see
            `DDPMObjective`).
        offset_noise: float >= 0, offset-noise strength (0: off).
        norm_regularization: float >= 0. Adds this times the mean squared
            difference between each vector's norm and its initial norm to the
            loss, which keeps the vectors as long as real words' (0: off).
        seed: int or None. Seed of the noise and timestep draws.
        objective_options: dict or None, more options of the backbone's
            objective: an SD3 model's flow matching takes `weighting_scheme`
            and `precondition_outputs` (`FlowMatchingObjective`).
        **kwargs: `name` and other `keras.Model` arguments.

    Call arguments:
        inputs: a batch dict as above.

    Returns:
        `(prediction, target, weights)`: float32 UNet output and target of
        shape `(batch, h, w, channels)` and float32 loss weights `(batch,)`.

    Raises:
        ValueError: lists of different lengths, an initializer with no token
            or containing a placeholder, a placeholder that is a vocabulary
            word, or a tokenizer whose ids do not fit the embedding table.

    Example:

    ```python
    backbone = StableDiffusionBackbone.from_preset("tiny")
    trainer = TextualInversionTrainer(backbone, "<cat-toy>", "toy", num_vectors=2)
    trainer.compile(optimizer=keras.optimizers.Adam(5e-3), jit_compile=True)
    trainer.fit(batches, steps_per_epoch=100)
    trainer.embedding(steps=100)  # a studio.embeddings.TextualInversionEmbedding
    ```
    """

    SAMPLE_STEPS = 20

    def __init__(
        self,
        backbone,
        placeholder_tokens,
        initializer_words,
        num_vectors=1,
        min_snr_gamma=None,
        offset_noise=0.0,
        norm_regularization=0.0,
        seed=None,
        objective_options=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        tokens, words, counts = _as_lists(placeholder_tokens, initializer_words, num_vectors)
        if not norm_regularization >= 0:
            raise InvalidInputError(
                "`norm_regularization` must be >= 0 (0 turns it off). "
                f"Received: norm_regularization={norm_regularization!r}"
            )
        self.placeholder_tokens = tokens
        self.initializer_words = words
        self.num_vectors = counts
        self.min_snr_gamma = min_snr_gamma
        self.offset_noise = offset_noise
        self.objective_options = dict(objective_options or {})
        self.norm_regularization = float(norm_regularization)
        self.seed = seed

        for network in backbone.components.values():
            network.trainable = False
        self._track_backbone(backbone)

        token_ids, word_ids = add_placeholder_tokens(backbone.tokenizer, tokens, words, counts)
        first_new_id = token_ids[tokens[0]][0]
        self.placeholder_token_ids = token_ids
        self.placeholder_embedding, self.initial_norms = self._placeholder_lookup(
            backbone, first_new_id, word_ids, counts
        )
        self._start_training_state(
            seed, min_snr_gamma=min_snr_gamma, offset_noise=offset_noise,
            **self.objective_options,
        )

    def _placeholder_lookup(self, backbone, first_new_id, word_ids, counts):
        """The token lookup of the placeholders and their vectors' initial norms.

        One `PlaceholderEmbedding` on the text encoder's table; a family
        with several text encoders (SDXL) overrides this with one per
        encoder.
        """
        check_fits_table(backbone.tokenizer, first_new_id, backbone.token_embedding)
        initial = initial_placeholder_vectors(backbone.token_embedding, word_ids, counts)
        lookup = PlaceholderEmbedding(
            backbone.token_embedding,
            first_new_id,
            initial,
            output_dtype=backbone.text_compute_dtype,
            name="placeholder_embedding",
        )
        return lookup, np.linalg.norm(initial, axis=-1).astype("float32")

    # --- The training step ------------------------------------------------

    @property
    def new_vectors(self):
        """The trainable variable `(total vectors, width)`, placeholders in order."""
        return self.placeholder_embedding.new_vectors

    def encode_text(self, token_ids):
        """The backbone's conditioning for token ids that may include placeholders.

        Args:
            token_ids: int `(batch, length)`, from `backbone.tokenizer`.

        Returns:
            The dict of `backbone.encode_text` (`{"context": float32
            (batch, length, width)}` for Stable Diffusion).
        """
        return self.backbone.encode_text(token_ids, token_lookup=self.placeholder_embedding)

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict) or "token_ids" not in inputs:
            raise ValueError(
                "A batch must be a dict with 'token_ids' and one of "
                f"{IMAGE_INPUT_KEYS}. Received: {describe_batch(inputs)}"
            )
        latents = self._clean_latents(inputs, requirement=" besides 'token_ids'")
        noisy, timesteps, target, weights = self.objective.noisy_latents(
            latents, self.seed_generator
        )
        conditioning = self._sized_conditioning(self.encode_text(inputs["token_ids"]), latents)
        prediction = self.backbone.denoise(noisy, timesteps, conditioning, training=False)
        return ops.cast(prediction, "float32"), target, weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        prediction, target, weights = y_pred
        loss = self.objective.loss(prediction, target, weights)
        if self.norm_regularization:
            loss = loss + self.norm_regularization * self.norm_penalty()
        # Data parallel (TensorFlow): the optimizer sums the replicas'
        # gradients, so each returns its share of the global-batch loss.
        loss = replica_share(loss)
        self.step_loss.update_state(sum_over_replicas(loss))
        return loss

    def norm_penalty(self):
        """Mean squared difference between the vectors' norms and their initial norms."""
        norms = ops.sqrt(ops.sum(ops.square(self.new_vectors), axis=-1))
        return ops.mean(ops.square(norms - ops.convert_to_tensor(self.initial_norms)))

    # --- Results ----------------------------------------------------------

    def learned_vectors(self):
        """Dict placeholder -> float32 numpy array `(num_vectors, width)`."""
        vectors = ops.convert_to_numpy(self.new_vectors).astype("float32")
        result, start = {}, 0
        for token, count in zip(self.placeholder_tokens, self.num_vectors):
            result[token] = vectors[start : start + count]
            start += count
        return result

    def vector_norms(self):
        """Dict "<token>" or "<token>_i" -> L2 norm of that vector (float)."""
        norms = {}
        for token, vectors in self.learned_vectors().items():
            for index, vector in enumerate(vectors):
                name = token if index == 0 else f"{token}_{index}"
                # In float64: a diverged vector (1e38) squared overflows float32.
                norms[name] = float(np.linalg.norm(np.asarray(vector, np.float64)))
        return norms

    def embedding(self, steps=None):
        """The learned vectors as a `studio.embeddings.TextualInversionEmbedding`."""
        from studio.embeddings import TextualInversionEmbedding

        return TextualInversionEmbedding(
            self.learned_vectors(),
            base_model=self.backbone.name,
            base_model_hash=published_text_encoder_hash(self.backbone.name),
            token_table_hash=self.backbone.token_table_hash,
            initializer=", ".join(self.initializer_words),
            steps=steps,
        )

    def save_embedding(self, path, steps=None):
        """Writes the learned vectors to `path` (native `.safetensors`), atomically."""
        from studio.embeddings import save_embedding

        return save_embedding(self.embedding(steps), path, format="native")

    def save_results(self, folder, step):
        """Writes `embedding.safetensors` into `folder` (for `TrainingRun`)."""
        return self.save_embedding(os.path.join(folder, EMBEDDING_FILE), steps=step)

    def log_scalars(self):
        """TensorBoard scalars beside the loss: each vector's norm (for `TrainingRun`)."""
        return {f"vector_norm/{name}": norm for name, norm in self.vector_norms().items()}

    def sampling_backbone(self):
        """A view of the backbone whose text encoding reads the trainer's vectors.

        Prompts may use the placeholder tokens (the backbone's tokenizer
        has them); the view looks them up in the vectors as trained so far.
        """
        return self.backbone.with_token_lookup(self.backbone.tokenizer, self.placeholder_embedding)

    def get_config(self):
        return {
            "name": self.name,
            "backbone": self.backbone.name,
            "placeholder_tokens": list(self.placeholder_tokens),
            "initializer_words": list(self.initializer_words),
            "num_vectors": list(self.num_vectors),
            "min_snr_gamma": self.min_snr_gamma,
            "offset_noise": self.offset_noise,
            "objective_options": self.objective_options,
            "norm_regularization": self.norm_regularization,
            "seed": self.seed,
        }


def _as_lists(placeholder_tokens, initializer_words, num_vectors):
    tokens = _as_list(placeholder_tokens)
    words = _as_list(initializer_words)
    counts = [num_vectors] * len(tokens) if isinstance(num_vectors, int) else list(num_vectors)
    if not tokens or len(words) != len(tokens) or len(counts) != len(tokens):
        raise InvalidInputError(
            "Give one initializer word and one vector count (or one count for all) "
            f"per placeholder token. Received: placeholder_tokens={tokens}, "
            f"initializer_words={words}, num_vectors={num_vectors!r}"
        )
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise InvalidInputError(
                f"`num_vectors` must be integers >= 1. Received: num_vectors={num_vectors!r}"
            )
    if len(set(tokens)) != len(tokens):
        raise InvalidInputError(f"Placeholder tokens must differ. Received: {tokens}")
    return tokens, words, [int(count) for count in counts]


def _as_list(value):
    return [value] if isinstance(value, str) else list(value)


def add_placeholder_tokens(tokenizer, tokens, words, counts):
    """Adds placeholder tokens to `tokenizer`, checking their initializer words first.

    Shared by the trainers that learn placeholder vectors (textual
    inversion, pivotal tuning).

    Args:
        tokenizer: the backbone's tokenizer (SD-XL's two share its ids).
        tokens: list of placeholder tokens.
        words: list of initializer words, one per token.
        counts: list of vector counts, one per token.

    Returns:
        `(token_ids, word_ids)`: dict token -> its new ids (the tokenizer's
        last ones, in order) and, per token, the ids of its initializer.

    Raises:
        InvalidInputError: an initializer with no token or containing a
            placeholder, or a placeholder that is a vocabulary word.
    """
    # Initializers are checked before the tokenizer is changed.
    word_ids = [_initializer_ids(tokenizer, token, word) for token, word in zip(tokens, words)]
    token_ids = _register_placeholders(tokenizer, tokens, counts)
    for token, word, ids, count in zip(tokens, words, word_ids, counts):
        _warn_of_split_initializer(tokenizer, token, word, ids, count)
    return token_ids, word_ids


def _register_placeholders(tokenizer, tokens, counts):
    """Adds the placeholders to the tokenizer (or checks they are there); returns their ids."""
    from studio.prompts import validate_placeholder_token

    registered = tokenizer.placeholder_tokens
    # Every token is checked before any is added: a failed trainer leaves
    # the tokenizer as it was.
    for token, count in zip(tokens, counts):
        if token not in registered:
            validate_placeholder_token(token, tokenizer)
        elif len(registered[token]) != count:
            raise InvalidInputError(
                f"The tokenizer already has {token!r} with {len(registered[token])} "
                f"vectors. Received: num_vectors={count}"
            )
    ids = {}
    for token, count in zip(tokens, counts):
        if token in registered:
            ids[token] = registered[token]
        else:
            ids[token] = tokenizer.add_placeholder_tokens(token, count)
    flat = [token_id for token in tokens for token_id in ids[token]]
    # The joined lookup needs the new ids to be the tokenizer's last ones,
    # consecutive and in placeholder order.
    expected = list(range(tokenizer.vocabulary_size - len(flat), tokenizer.vocabulary_size))
    if flat != expected:
        raise ValueError(
            "The placeholder tokens must be the tokenizer's last ids, in order. "
            f"Received: ids {flat}; the tokenizer's last {len(flat)} ids are {expected}"
        )
    return ids


def check_fits_table(tokenizer, first_new_id, token_embedding):
    """Raises an InvalidInputError when the tokenizer's ids do not fit the token table."""
    rows = token_embedding.input_dim
    if first_new_id > rows:
        raise InvalidInputError(
            f"The tokenizer's vocabulary ({first_new_id} ids before the placeholders) "
            f"does not fit the text encoder's embedding table ({rows} rows). "
            f"Received: a tokenizer of {tokenizer.vocabulary_size} ids"
        )


def _initializer_ids(tokenizer, token, word):
    """The ids of an initializer word: ordinary tokens, at least one."""
    if not isinstance(word, str):
        raise InvalidInputError(f"Initializer words must be strings. Received: {word!r}")
    ids = tokenizer.tokenize_words(word)
    if not ids:
        raise InvalidInputError(
            f"The initializer of {token!r} must contain at least one token, such "
            f"as a word that describes the concept. Received: {word!r}"
        )
    placeholder_ids = {i for ids in tokenizer.placeholder_tokens.values() for i in ids}
    if placeholder_ids.intersection(ids):
        raise InvalidInputError(
            f"The initializer of {token!r} must be ordinary words, not a "
            f"placeholder. Received: {word!r}"
        )
    return ids


def _warn_of_split_initializer(tokenizer, token, word, ids, count):
    """Warns when the initializer is more than `MAX_INITIALIZER_PIECES` tokens: not a known word."""
    if len(ids) <= MAX_INITIALIZER_PIECES:
        return
    pieces = ", ".join(repr(tokenizer.id_to_token(i).replace("</w>", "")) for i in ids)
    start = (
        "each of its vectors starts from one of them" if len(ids) == count
        else f"its {count} vector(s) start from their mean, which is close to no word"
    )
    warnings.warn(
        f"The initializer {word!r} of {token!r} is not one or two words the model knows: "
        f"it splits into {len(ids)} pieces ({pieces}), and {start}. An initializer "
        "the model knows whole that describes the concept (e.g. 'circle', 'toy') "
        "starts training closer to it.",
        StudioWarning,
        # The trainer that adds the placeholder.
        stacklevel=3,
    )


def initial_placeholder_vectors(token_embedding, word_ids, counts):
    """The placeholders' starting vectors `(total, width)` from a token table, float32.

    Args:
        token_embedding: the text encoder's `keras.layers.Embedding`.
        word_ids: per placeholder, the ids of its initializer word.
        counts: per placeholder, its number of vectors.
    """
    table = ops.convert_to_numpy(token_embedding.embeddings)
    return np.concatenate(
        [_initial_vectors(table, ids, count) for ids, count in zip(word_ids, counts)]
    ).astype("float32")


def _initial_vectors(table, ids, count):
    """One vector per initializer token when the counts match, else their mean."""
    vectors = table[ids].astype("float32")
    if len(ids) == count:
        return vectors
    return np.repeat(vectors.mean(axis=0, keepdims=True), count, axis=0)

