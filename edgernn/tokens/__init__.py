"""
Token models: text or token inputs through an embedding - classify, tag, and encoder-decoder
(sequence-to-sequence, e.g. grapheme-to-phoneme) with greedy / beam decoding.

    models.py     the embedding + GRU/LSTM models and the encoder-decoder (one decoder step = what a device runs)
    train.py      teacher-forced training into a run directory
    metrics.py    token / word error rates against accepted references
"""
