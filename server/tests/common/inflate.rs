//! A small raw-deflate decoder (RFC 1951, after zlib's `puff`) that also reports the
//! farthest back-reference: zlib and zlib-rs inflate a whole message into one buffer and
//! then let references reach back into it, so they cannot tell whether a stream keeps to
//! a client's `server_max_window_bits`. This can.

struct Bits<'a> {
    d: &'a [u8],
    pos: usize,
    bit: u64,
    cnt: u32,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Result<u32, String> {
        while self.cnt < n {
            let b = *self.d.get(self.pos).ok_or("out of input")?;
            self.bit |= u64::from(b) << self.cnt;
            self.pos += 1;
            self.cnt += 8;
        }
        let v = (self.bit & ((1u64 << n) - 1)) as u32;
        self.bit >>= n;
        self.cnt -= n;
        Ok(v)
    }

    fn decode(&mut self, h: &Huffman) -> Result<usize, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= self.bits(1)? as i32;
            let count = h.count[len] as i32;
            if code - count < first {
                return Ok(h.symbol[(index + (code - first)) as usize]);
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err("bad code".into())
    }
}

struct Huffman {
    count: [u16; 16],
    symbol: Vec<usize>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Huffman {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[l as usize] += 1;
        }
        count[0] = 0;
        let mut offs = [0usize; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len] as usize;
        }
        let mut symbol = vec![0; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[offs[l as usize]] = sym;
                offs[l as usize] += 1;
            }
        }
        Huffman { count, symbol }
    }
}

const LBASE: [usize; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEXT: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE: [usize; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Inflates the raw deflate `data` (blocks until the input ends): the output and the
/// farthest distance any back-reference reached.
pub fn inflate_max_distance(data: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut s = Bits {
        d: data,
        pos: 0,
        bit: 0,
        cnt: 0,
    };
    let (mut out, mut farthest) = (Vec::new(), 0);
    while let Ok(last) = s.bits(1) {
        match s.bits(2)? {
            0 => {
                s.bit = 0;
                s.cnt = 0;
                let d = s.d.get(s.pos..s.pos + 4).ok_or("short stored block")?;
                let len = u16::from_le_bytes([d[0], d[1]]) as usize;
                s.pos += 4;
                out.extend_from_slice(s.d.get(s.pos..s.pos + len).ok_or("short stored")?);
                s.pos += len;
            }
            t @ (1 | 2) => {
                let (lit, dist) = if t == 1 {
                    let mut l = [8u8; 288];
                    l[144..256].fill(9);
                    l[256..280].fill(7);
                    (Huffman::new(&l), Huffman::new(&[5u8; 30]))
                } else {
                    let nlen = s.bits(5)? as usize + 257;
                    let ndist = s.bits(5)? as usize + 1;
                    let ncode = s.bits(4)? as usize + 4;
                    let mut l = [0u8; 19];
                    for &o in &ORDER[..ncode] {
                        l[o] = s.bits(3)? as u8;
                    }
                    let lencode = Huffman::new(&l);
                    let mut lengths = vec![0u8; nlen + ndist];
                    let mut i = 0;
                    while i < nlen + ndist {
                        let sym = s.decode(&lencode)?;
                        let (v, n) = match sym {
                            0..=15 => (sym as u8, 1),
                            16 => (
                                *lengths.get(i.wrapping_sub(1)).ok_or("no previous")?,
                                3 + s.bits(2)?,
                            ),
                            17 => (0, 3 + s.bits(3)?),
                            _ => (0, 11 + s.bits(7)?),
                        };
                        for _ in 0..n {
                            *lengths.get_mut(i).ok_or("too many lengths")? = v;
                            i += 1;
                        }
                    }
                    (
                        Huffman::new(&lengths[..nlen]),
                        Huffman::new(&lengths[nlen..]),
                    )
                };
                loop {
                    let sym = s.decode(&lit)?;
                    if sym < 256 {
                        out.push(sym as u8);
                        continue;
                    }
                    if sym == 256 {
                        break;
                    }
                    let i = sym - 257;
                    let len = LBASE.get(i).ok_or("bad length")? + s.bits(LEXT[i])? as usize;
                    let d = s.decode(&dist)?;
                    let d = DBASE.get(d).ok_or("bad distance")? + s.bits(DEXT[d])? as usize;
                    if d > out.len() {
                        return Err("distance before the message".into());
                    }
                    farthest = farthest.max(d);
                    for _ in 0..len {
                        out.push(out[out.len() - d]);
                    }
                }
            }
            _ => return Err("bad block type".into()),
        }
        if last == 1 {
            break;
        }
    }
    Ok((out, farthest))
}
