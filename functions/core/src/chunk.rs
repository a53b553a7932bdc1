//! Size-bounded chunking: items split, in order, into groups that respect a count limit and a
//! byte limit (an API call's limits, an emitter's buffering).

/// The limits of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// At most this many items per chunk (0 is read as 1).
    pub max_items: usize,
    /// At most this many bytes per chunk, unless one item alone is larger.
    pub max_bytes: usize,
}

/// Splits `items` in order into chunks within `limits`, sizing each item with `size_of`. A
/// new chunk starts when adding the next item would exceed either limit; an item larger than
/// `max_bytes` travels alone (the caller decides whether the receiver takes it). No chunk is
/// empty.
pub fn chunks<T>(
    items: impl IntoIterator<Item = T>,
    limits: ChunkLimits,
    mut size_of: impl FnMut(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let size = size_of(&item);
        if !current.is_empty()
            && (current.len() >= limits.max_items
                || bytes
                    .checked_add(size)
                    .is_none_or(|total| total > limits.max_bytes))
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens<T>(c: &[Vec<T>]) -> Vec<usize> {
        c.iter().map(Vec::len).collect()
    }

    #[test]
    fn chunks_stop_at_the_item_count() {
        let limits = ChunkLimits {
            max_items: 500,
            max_bytes: usize::MAX,
        };
        let c = chunks(0..1201, limits, |_| 10);
        assert_eq!(lens(&c), vec![500, 500, 201]);
        assert_eq!(c.concat(), (0..1201).collect::<Vec<_>>(), "order is kept");
    }

    #[test]
    fn chunks_stop_before_the_byte_limit() {
        let limits = ChunkLimits {
            max_items: 500,
            max_bytes: 5 * 1024 * 1024,
        };
        // 12 items of 900 KiB: five fit in 5 MiB.
        let c = chunks(0..12, limits, |_| 900 * 1024);
        assert_eq!(lens(&c), vec![5, 5, 2]);
        // Exactly at the limit still fits.
        let c = chunks(
            0..4,
            ChunkLimits {
                max_items: 10,
                max_bytes: 20,
            },
            |_| 10,
        );
        assert_eq!(lens(&c), vec![2, 2]);
    }

    #[test]
    fn an_item_over_the_byte_limit_travels_alone() {
        let limits = ChunkLimits {
            max_items: 10,
            max_bytes: 100,
        };
        let sizes = [10, 500, 10, 10];
        let c = chunks(sizes, limits, |s| *s);
        assert_eq!(c, vec![vec![10], vec![500], vec![10, 10]]);
    }

    #[test]
    fn nothing_gives_no_chunk_and_zero_items_means_one() {
        let limits = ChunkLimits {
            max_items: 3,
            max_bytes: 10,
        };
        assert!(chunks(Vec::<u8>::new(), limits, |_| 1).is_empty());
        let one = ChunkLimits {
            max_items: 0,
            max_bytes: 10,
        };
        assert_eq!(lens(&chunks(0..3, one, |_| 1)), vec![1, 1, 1]);
        let huge = ChunkLimits {
            max_items: 3,
            max_bytes: usize::MAX,
        };
        assert_eq!(lens(&chunks(0..4, huge, |_| usize::MAX)), vec![1, 1, 1, 1]);
    }
}
