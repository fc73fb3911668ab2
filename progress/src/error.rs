//! What can go wrong reading or writing progress documents.

/// A document could not be converted to or from its BSON form.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// A stored document does not have the expected shape.
    #[error("unreadable document: {0}")]
    Read(#[from] bson::de::Error),
    /// A value could not be written as BSON.
    #[error("cannot convert to BSON: {0}")]
    Write(#[from] bson::ser::Error),
}

/// A [`ProgressReader`](crate::ProgressReader) lookup failed.
#[cfg(feature = "reader")]
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// MongoDB could not be reached or refused the query.
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A stored document could not be read.
    #[error(transparent)]
    Document(#[from] DocumentError),
}
