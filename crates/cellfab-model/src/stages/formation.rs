//! Formation cycling: the first charge and discharge of every cell (MODELS.md §10).
//! `FilledCell`s in, `FormedCell`s out; the cell model is [`crate::cell`].
