//! Buffers kept from one batch for the next: the binary `COPY` tuples of a batch's rows,
//! and the value vectors of rows passed through as tuples.

use std::ops::Range;

use crate::value::Value;

/// Rows as binary `COPY` tuples (see [`super::ReadRow::tuple`]), one after another in one buffer:
/// a batch's rows are sent from it as they are, without a buffer per row.
#[derive(Debug, Default)]
pub struct Tuples {
    data: Vec<u8>,
    /// Where each tuple ends in `data`.
    ends: Vec<usize>,
}

/// Buffers of batches' tuples given back when their batch is done, taken again by the next
/// batches: a buffer of a megabyte or two per batch, allocated fresh each time, costs a page
/// fault for every page of it once the allocator has given the pages back. At most
/// [`KEPT_BUFFERS`] (as many as batches are held at once), none larger than [`KEPT_BYTES`];
/// a buffer is taken for a batch that needs at least a quarter of it.
static BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
const KEPT_BUFFERS: usize = 3;
const KEPT_BYTES: usize = 16 << 20;

impl Tuples {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let kept = BUFFERS.lock().ok().and_then(|mut b| {
            // Large enough, and not a large buffer for a few rows.
            let i = b
                .iter()
                .position(|d| d.capacity() >= bytes && d.capacity() / 4 <= bytes)?;
            Some(b.swap_remove(i))
        });
        Tuples {
            data: kept.unwrap_or_else(|| Vec::with_capacity(bytes)),
            ends: Vec::with_capacity(rows),
        }
    }

    pub fn push(&mut self, tuple: &[u8]) {
        self.data.extend_from_slice(tuple);
        self.ends.push(self.data.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// The tuple of row `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        self.data.get(self.start(i)..end)
    }

    /// The tuples of rows `r`, one after another; `None` when `r` is out of range.
    pub fn span(&self, r: Range<usize>) -> Option<&[u8]> {
        if r.is_empty() {
            return Some(&[]);
        }
        let end = *self.ends.get(r.end - 1)?;
        self.data.get(self.start(r.start)..end)
    }
}

impl Drop for Tuples {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        if data.capacity() == 0 || data.capacity() > KEPT_BYTES {
            return;
        }
        data.clear();
        if let Ok(mut kept) = BUFFERS.lock()
            && kept.len() < KEPT_BUFFERS
        {
            kept.push(data);
        }
    }
}

/// The value vectors of pass-through rows ([`ReadRow::tuple`]) whose batch is done, taken
/// again by the rows read next: such a row's values are mostly NULL placeholders, but a vector
/// of them all the same (17 columns: 544 bytes), allocated by the reading task and freed by
/// another once its batch is written, costs the allocator fresh pages, and the process their
/// page faults, for every batch. At most [`KEPT_VALUE_BYTES`] of them are kept.
static VALUE_ROWS: std::sync::Mutex<KeptRows> = std::sync::Mutex::new(KeptRows {
    rows: Vec::new(),
    bytes: 0,
});
const KEPT_VALUE_BYTES: usize = 8 << 20;

struct KeptRows {
    rows: Vec<Vec<Value>>,
    /// Their capacity, in bytes.
    bytes: usize,
}

/// An empty vector for the values of a row of `n` columns: a kept one if there is one large
/// enough.
pub(crate) fn row_values(n: usize) -> Vec<Value> {
    let kept = VALUE_ROWS.lock().ok().and_then(|mut k| {
        let v = k.rows.pop()?;
        k.bytes -= v.capacity() * std::mem::size_of::<Value>();
        Some(v)
    });
    match kept {
        Some(v) if v.capacity() >= n => v,
        _ => Vec::with_capacity(n),
    }
}

/// Keep the vectors of pass-through rows written for the rows read next ([`row_values`]),
/// emptied, as far as [`KEPT_VALUE_BYTES`] allows; the rest are freed.
pub(crate) fn give_back_rows(mut rows: Vec<Vec<Value>>) {
    for v in &mut rows {
        v.clear();
    }
    let Ok(mut kept) = VALUE_ROWS.lock() else {
        return;
    };
    for v in rows {
        let size = v.capacity() * std::mem::size_of::<Value>();
        if size == 0 {
            continue;
        }
        if kept.bytes + size > KEPT_VALUE_BYTES {
            break;
        }
        kept.bytes += size;
        kept.rows.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_are_kept_one_after_another_and_taken_by_row() {
        let mut t = Tuples::with_capacity(3, 16);
        assert!(t.is_empty());
        for b in [&b"ab"[..], b"", b"cde"] {
            t.push(b);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(0), Some(&b"ab"[..]));
        assert_eq!(t.get(1), Some(&b""[..]));
        assert_eq!(t.get(2), Some(&b"cde"[..]));
        assert_eq!(t.get(3), None);
        assert_eq!(t.span(0..3), Some(&b"abcde"[..]));
        assert_eq!(t.span(1..3), Some(&b"cde"[..]));
        assert_eq!(t.span(2..2), Some(&b""[..]));
        assert_eq!(t.span(2..4), None);
    }

    #[test]
    fn a_batch_buffer_given_back_is_taken_again() {
        // A size no other test asks for (a buffer is taken only by a batch that needs at least a
        // quarter of it), so that the buffer found is this test's own.
        let size = (3 << 20) + 4099;
        let mut t = Tuples::with_capacity(1, size);
        t.push(&[1, 2, 3]);
        let at = t.data.as_ptr();
        drop(t);
        let again = Tuples::with_capacity(2, size);
        assert_eq!(again.data.as_ptr(), at);
        assert!(again.is_empty() && again.data.is_empty());
        assert!(again.data.capacity() >= size);
        drop(again);
        // Nor is it taken for a few rows.
        assert_ne!(Tuples::with_capacity(1, 64).data.as_ptr(), at);
        // Too large to keep: given back to the allocator.
        drop(Tuples::with_capacity(1, KEPT_BYTES + 1));
        assert!(
            BUFFERS
                .lock()
                .expect("buffers")
                .iter()
                .all(|b| b.capacity() <= KEPT_BYTES)
        );
    }

    #[test]
    fn row_vectors_given_back_are_kept_empty_and_within_their_bound() {
        // A capacity no other test asks for: these vectors are this test's own. (One other test
        // reads a few pass-through rows meanwhile and may take one or two of them.)
        let cap = 977;
        let mine: Vec<Vec<Value>> = (0..64)
            .map(|i| {
                let mut v = Vec::with_capacity(cap);
                v.extend([Value::Int(i), Value::Text("监督检查".into()), Value::Null]);
                v
            })
            .collect();
        let at: Vec<*const Value> = mine.iter().map(|v| v.as_ptr()).collect();
        give_back_rows(mine);
        {
            let kept = VALUE_ROWS.lock().expect("kept rows");
            let found = kept
                .rows
                .iter()
                .filter(|v| at.contains(&v.as_ptr()))
                .count();
            assert!(found >= 32, "only {found} of 64 vectors kept");
            assert!(kept.rows.iter().all(Vec::is_empty));
            let bytes: usize = kept.rows.iter().map(|v| v.capacity()).sum::<usize>()
                * std::mem::size_of::<Value>();
            assert_eq!(kept.bytes, bytes);
        }
        // Taken again, empty and large enough, whatever is kept.
        let v = row_values(17);
        assert!(v.is_empty() && v.capacity() >= 17);
        // More than the bound: the rest are freed.
        give_back_rows((0..20_000).map(|_| Vec::with_capacity(17)).collect());
        let kept = VALUE_ROWS.lock().expect("kept rows");
        assert!(kept.bytes <= KEPT_VALUE_BYTES, "{} bytes kept", kept.bytes);
        assert!(
            kept.bytes > KEPT_VALUE_BYTES / 2,
            "{} bytes kept",
            kept.bytes
        );
    }
}
