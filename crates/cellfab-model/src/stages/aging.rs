//! Aging: rest at open circuit, measure the K-value, DC resistance and grade every cell
//! (MODELS.md §11). `FormedCell`s in, `AgedCell`s out.
