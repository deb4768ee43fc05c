//! CPU-bound work spread over the machine's cores: the one place hotsync runs it on threads (parsing
//! manifests, rendering overlays and charts, diffing sets). Scoped threads, at most 8, in chunks; the
//! results keep the order of the items, and a panic in a worker goes on in the caller.

/// `f` of each item, in the items' order, on up to 8 threads, each taking chunks of at least
/// `min_chunk` items (so that small inputs stay on one thread).
pub fn map<T: Sync, R: Send>(items: &[T], min_chunk: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let per = items.len().div_ceil(threads).max(min_chunk.max(1));
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_order_of_the_items() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            super::map(&items, 7, |i| i * 2),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(super::map(&[] as &[u32], 1, |i| *i).is_empty());
    }
}
