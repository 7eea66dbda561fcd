//! A validating scanner for the JSON the proxy forwards: clients' calls
//! and backends' answers. It returns the spans of an object's members
//! (a call's `jsonrpc`, `id`, `method`, `params`; an answer's `id`,
//! `result`, `error`), every byte checked against the JSON grammar (RFC
//! 8259) without building any value.
//!
//! Why not serde_json here: an answer is mostly long strings (hashes,
//! hex data, blooms), which serde_json validates byte by byte (≈ 7
//! instructions per byte of a block answer, a third of the proxy's work on
//! a 100-block batch), and a call was read twice in a batch (the array,
//! then each item). This scanner finds a string's end sixteen bytes at a
//! time: three SSE2 compares and a mask on x86-64 (through `safe_arch`'s
//! safe wrappers), two eight-byte word tests (integer arithmetic)
//! elsewhere; long strings go thirty-two bytes a turn. Kept as our own
//! code: the proxy needs zero-copy slices of the body, and the SIMD JSON
//! crates work differently (simd-json parses a mutable copy into a tape;
//! sonic-rs would be a large new dependency for this one function). Error objects
//! and anything unusual (a member name given twice or with an escape) still
//! go through serde_json, whose verdicts and words stand; the tests here
//! and in `parse` check both agree on tens of thousands of damaged calls
//! and answers.
//!
//! The scanner reads bytes, not a `str`: UTF-8 is checked only where it can
//! be broken, inside strings that have a byte above 0x7f (outside strings,
//! such a byte is already refused by the grammar). Whole-body validation
//! cost half an instruction per byte of every answer, most of them ASCII.

/// Nesting deeper than this is refused (no JSON-RPC answer comes near; a
/// call nested deeper is handed to serde_json; the scanner keeps one bit
/// per level, on the stack).
pub(crate) const MAX_DEPTH: usize = 1024;

/// Why an answer could not be scanned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Not JSON (or nested deeper than [`MAX_DEPTH`]): at this byte.
    Malformed(usize),
    /// A member named twice.
    Duplicate(&'static str),
    /// A key with an escape sequence: the caller decides with serde_json.
    EscapedKey,
}

/// The members of an answer object that matter, as raw JSON text (valid
/// UTF-8: each one was scanned or parsed whole).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields<'a> {
    pub(crate) id: Option<&'a [u8]>,
    pub(crate) result: Option<&'a [u8]>,
    pub(crate) error: Option<&'a [u8]>,
}

/// One bit per open container: set for an object.
struct Nesting {
    bits: [u64; MAX_DEPTH / 64],
    depth: usize,
}

impl Nesting {
    fn new() -> Self {
        Nesting {
            bits: [0; MAX_DEPTH / 64],
            depth: 0,
        }
    }

    fn push(&mut self, object: bool) -> bool {
        if self.depth == MAX_DEPTH {
            return false;
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if object {
            self.bits[word] |= 1 << bit;
        } else {
            self.bits[word] &= !(1 << bit);
        }
        self.depth += 1;
        true
    }

    /// The innermost container: `Some(true)` for an object.
    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        Some(self.bits[d / 64] & (1 << (d % 64)) != 0)
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }
}

/// Bytes that end a run of plain string content: the closing quote, an
/// escape, a control character (not allowed raw in a string), or a byte
/// above 0x7f (part of a character whose UTF-8 must be checked). What
/// [`find_special`] looks for, byte by byte (the tests' reference).
#[cfg(test)]
fn special(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..=0x7f).contains(&b)
}

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_le_bytes([1; 8]);
/// The high bit of every byte of a word.
const HIGHS: u64 = ONES << 7;

/// The offset of the first [`special`] byte of an eight-byte word, tested
/// as one `u64` (SWAR: "has a zero byte" on the word xor `"` and xor `\`,
/// "has a byte below 0x20" on the word itself, and the high bit of each
/// byte). A borrow can only mark a byte above one that is really special,
/// so the lowest mark is exact.
#[inline(always)]
fn special_in_word(word: [u8; 8]) -> Option<usize> {
    let word = u64::from_le_bytes(word);
    let quote = word ^ (ONES * u64::from(b'"'));
    let escape = word ^ (ONES * u64::from(b'\\'));
    let marks = ((quote.wrapping_sub(ONES) & !quote)
        | (escape.wrapping_sub(ONES) & !escape)
        | (word.wrapping_sub(ONES * 0x20) & !word)
        | word)
        & HIGHS;
    (marks != 0).then(|| marks.trailing_zeros() as usize / 8)
}

/// The eight bytes of `bytes` at `at`, if there are eight.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> Option<[u8; 8]> {
    bytes.get(at..at + 8)?.try_into().ok()
}

/// The [`special`] bytes of a sixteen-byte block, a bit each (bit `i` for
/// byte `i`): three vector compares and a mask (SSE2, part of every x86-64
/// CPU, through `safe_arch`'s safe wrappers: the workspace has no
/// `unsafe`). A signed compare with 0x20 also catches the bytes above 0x7f
/// (negative as `i8`).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn block_marks(block: &[u8; 16]) -> u32 {
    use safe_arch::{
        bitor_m128i, cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, load_unaligned_m128i,
        move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let v = load_unaligned_m128i(block);
    let quote = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'"' as i8));
    let escape = cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b'\\' as i8));
    let outside = cmp_lt_mask_i8_m128i(v, set_splat_i8_m128i(0x20));
    move_mask_i8_m128i(bitor_m128i(bitor_m128i(quote, escape), outside)) as u32
}

/// [`block_marks`] elsewhere, from the block's two words
/// ([`special_in_word`]): only the first special byte is marked.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn block_marks(block: &[u8; 16]) -> u32 {
    block_marks_by_words(block)
}

/// The first special byte of a block found with two word tests, marked as
/// its bit (what [`block_marks`] is where SSE2 is not; the tests hold both
/// to the same first byte).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn block_marks_by_words(block: &[u8; 16]) -> u32 {
    let (first, second) = block.split_at(8);
    let (Ok(first), Ok(second)) = (first.try_into(), second.try_into()) else {
        return 0;
    };
    special_in_word(first)
        .or_else(|| Some(8 + special_in_word(second)?))
        .map_or(0, |i| 1 << i)
}

/// The offset of the first [`special`] byte of a sixteen-byte block.
#[inline(always)]
fn special_in_block(block: &[u8; 16]) -> Option<usize> {
    let marks = block_marks(block);
    (marks != 0).then(|| marks.trailing_zeros() as usize)
}

/// The offset of the first [`special`] byte:
///
/// - the first sixteen bytes as one block ([`special_in_block`]): most
///   strings of an answer (member names, short hex numbers) end there,
///   inlined where strings are read;
/// - then [`find_special_after`]: thirty-two bytes a turn, for hashes,
///   blooms and call data;
/// - the last few bytes of the text as a word padded with a plain byte.
#[inline(always)]
pub(crate) fn find_special(bytes: &[u8]) -> Option<usize> {
    match bytes.first_chunk::<16>() {
        Some(block) => special_in_block(block).or_else(|| find_special_after(bytes, 16)),
        None => find_special_after(bytes, 0),
    }
}

/// [`find_special`] from offset `at` (none before it).
#[inline(never)]
fn find_special_after(bytes: &[u8], mut at: usize) -> Option<usize> {
    // Thirty-two bytes per turn: the two blocks' tests are independent, and
    // the loop's own work is paid half as often.
    for pair in bytes.get(at..).unwrap_or_default().chunks_exact(32) {
        let (Some(first), Some(second)) = (pair.first_chunk::<16>(), pair.last_chunk::<16>())
        else {
            break;
        };
        let marks = block_marks(first) | block_marks(second) << 16;
        if marks != 0 {
            return Some(at + marks.trailing_zeros() as usize);
        }
        at += 32;
    }
    if let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<16>()) {
        if let Some(i) = special_in_block(block) {
            return Some(at + i);
        }
        at += 16;
    }
    if let Some(word) = word_at(bytes, at) {
        if let Some(i) = special_in_word(word) {
            return Some(at + i);
        }
        at += 8;
    }
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.is_empty() {
        return None;
    }
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    special_in_word(last).map(|i| at + i)
}

pub(crate) struct Scanner<'a> {
    text: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        Scanner { text, i: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.i).copied()
    }

    fn malformed<T>(&self) -> Result<T, Scan> {
        Err(Scan::Malformed(self.i))
    }

    #[inline(always)]
    pub(crate) fn ws(&mut self) {
        // Compact JSON has none: one compare decides.
        if self.peek().is_some_and(|b| b <= b' ') {
            self.ws_rest();
        }
    }

    #[inline(never)]
    fn ws_rest(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// Expects `byte` (after whitespace).
    fn expect(&mut self, byte: u8) -> Result<(), Scan> {
        self.ws();
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            self.malformed()
        }
    }

    /// At the end of the text, whitespace aside.
    pub(crate) fn end(&mut self) -> Result<(), Scan> {
        self.ws();
        if self.i == self.text.len() {
            Ok(())
        } else {
            self.malformed()
        }
    }

    /// Whether the next byte (after whitespace) is `byte`; consumed if so.
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        self.ws();
        let hit = self.peek() == Some(byte);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// The offset the scanner is at.
    pub(crate) fn position(&self) -> usize {
        self.i
    }

    /// Goes back to `at` (an offset [`position`](Self::position) gave).
    pub(crate) fn rewind(&mut self, at: usize) {
        self.i = at;
    }

    /// The `[` that opens a batch (after whitespace).
    pub(crate) fn expect_open_array(&mut self) -> Result<(), Scan> {
        self.expect(b'[')
    }

    /// The `,` between a batch's answers (after whitespace).
    pub(crate) fn expect_comma(&mut self) -> Result<(), Scan> {
        self.expect(b',')
    }

    /// A string, the scanner at its opening quote. Inlined where strings
    /// are read: most strings have no escape and end in their first
    /// sixteen bytes, and that path is a few instructions; the rest is
    /// [`Scanner::string_rest`], out of line.
    #[inline(always)]
    fn string(&mut self) -> Result<(), Scan> {
        self.string_escaped().map(|_| ())
    }

    /// [`string`](Self::string), and whether it has an escape.
    #[inline(always)]
    fn string_escaped(&mut self) -> Result<bool, Scan> {
        let start = self.i + 1;
        let rest = self.bytes().get(start..).unwrap_or_default();
        match find_special(rest) {
            Some(n) if rest.get(n) == Some(&b'"') => {
                self.i = start + n + 1;
                Ok(false)
            }
            // The first byte that is not plain content is not the closing
            // quote: an escape, a character beyond ASCII (or an error).
            _ => self.string_rest(start),
        }
    }

    /// A string from its content's first byte `at`: escapes checked, each
    /// character beyond ASCII checked as UTF-8, a control character or a
    /// missing closing quote refused; whether it has an escape.
    #[inline(never)]
    fn string_rest(&mut self, at: usize) -> Result<bool, Scan> {
        self.i = at;
        let mut escaped = false;
        loop {
            let rest = &self.bytes()[self.i..];
            let Some(n) = find_special(rest) else {
                self.i = self.text.len();
                return self.malformed();
            };
            self.i += n;
            match rest[n] {
                b'"' => {
                    self.i += 1;
                    return Ok(escaped);
                }
                b'\\' => {
                    self.i += 1;
                    escaped = true;
                }
                lead @ 0x80.. => {
                    // One character, as std's UTF-8 check sees it (no
                    // overlong form, no surrogate, nothing past U+10FFFF).
                    let width = match lead {
                        0xc2..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf4 => 4,
                        _ => return self.malformed(),
                    };
                    let ch = self.bytes().get(self.i..self.i + width);
                    if ch.is_none_or(|c| std::str::from_utf8(c).is_err()) {
                        return self.malformed();
                    }
                    self.i += width;
                    continue;
                }
                // A control character.
                _ => return self.malformed(),
            }
            match self.peek() {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                Some(b'u') => {
                    let hex = self.bytes().get(self.i + 1..self.i + 5);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return self.malformed();
                    }
                    self.i += 5;
                }
                _ => return self.malformed(),
            }
        }
    }

    fn digits(&mut self) -> Result<(), Scan> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        if self.i == start {
            self.malformed()
        } else {
            Ok(())
        }
    }

    fn number(&mut self) -> Result<(), Scan> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return self.malformed(),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Scan> {
        if self.bytes()[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.malformed()
        }
    }

    /// An object member's key and colon (after whitespace).
    #[inline(always)]
    fn key(&mut self) -> Result<(), Scan> {
        self.ws();
        if self.peek() != Some(b'"') {
            return self.malformed();
        }
        self.string()?;
        // Compact JSON: the colon right after the name.
        if self.peek() == Some(b':') {
            self.i += 1;
            return Ok(());
        }
        self.expect(b':')
    }

    /// One value (after whitespace), validated and skipped; its text.
    pub(crate) fn value(&mut self) -> Result<&'a [u8], Scan> {
        self.ws();
        let start = self.i;
        let mut nesting = Nesting::new();
        // The innermost container (`Some(true)`: an object), kept here so
        // that the end of each value does not read the stack.
        let mut inner = None;
        loop {
            // A value starts here.
            self.ws();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.i += 1;
                    let object = open == b'{';
                    if !self.eat(if object { b'}' } else { b']' }) {
                        if !nesting.push(object) {
                            return self.malformed();
                        }
                        inner = Some(object);
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return self.malformed(),
            }
            // A value ended: close what it ends, or go on to the next one.
            loop {
                let Some(object) = inner else {
                    return Ok(&self.text[start..self.i]);
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.i += 1;
                        nesting.pop();
                        inner = nesting.top();
                    }
                    Some(b']') if !object => {
                        self.i += 1;
                        nesting.pop();
                        inner = nesting.top();
                    }
                    _ => return self.malformed(),
                }
            }
        }
    }

    /// An answer object (after whitespace): its `id`, `result` and `error`
    /// members; any other member validated and skipped.
    pub(crate) fn answer(&mut self) -> Result<Fields<'a>, Scan> {
        let [id, result, error] = self.members(&["id", "result", "error"])?;
        Ok(Fields { id, result, error })
    }

    /// An object (after whitespace): the values of the members `names`
    /// (their raw JSON text, `None` when absent), in that order; any other
    /// member validated and skipped. A name given twice is
    /// [`Scan::Duplicate`]; a member name with an escape is
    /// [`Scan::EscapedKey`] (it could spell one of `names`).
    pub(crate) fn members<const N: usize>(
        &mut self,
        names: &[&'static str; N],
    ) -> Result<[Option<&'a [u8]>; N], Scan> {
        self.expect(b'{')?;
        let mut found = [None; N];
        if self.eat(b'}') {
            return Ok(found);
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.malformed();
            }
            let key_start = self.i + 1;
            if self.string_escaped()? {
                return Err(Scan::EscapedKey);
            }
            let key = &self.bytes()[key_start..self.i - 1];
            self.expect(b':')?;
            let value = self.value()?;
            if let Some(at) = names.iter().position(|name| name.as_bytes() == key) {
                if found[at].replace(value).is_some() {
                    return Err(Scan::Duplicate(names[at]));
                }
            }
            if self.eat(b',') {
                continue;
            }
            self.expect(b'}')?;
            return Ok(found);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn value<T: AsRef<[u8]> + ?Sized>(text: &T) -> Result<&[u8], Scan> {
        let mut s = Scanner::new(text.as_ref());
        let v = s.value()?;
        s.end()?;
        Ok(v)
    }

    /// The word-at-a-time search finds the same byte as a byte-by-byte
    /// one, wherever it is: in the first two words, in a vector block, in
    /// the padded tail; next to bytes that look close (0x1f / 0x20, `!`,
    /// `#`, `[`, `]`, 0x80 and above, which a borrow or a sign bit could
    /// confuse).
    #[test]
    fn find_special_agrees_with_a_byte_by_byte_search() {
        let plain = [
            b'a', b'0', b' ', b'!', b'#', b'[', b']', 0x20, 0x7f, 0x80, 0xa2, 0xdc, 0xff,
        ];
        let odd = [b'"', b'\\', 0x00, 0x01, 0x0a, 0x1f];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in 0..80 {
            for _ in 0..200 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| plain[next() as usize % plain.len()])
                    .collect();
                // None, one or two special bytes, anywhere.
                for _ in 0..next() % 3 {
                    if len > 0 {
                        let at = next() as usize % len;
                        bytes[at] = odd[next() as usize % odd.len()];
                    }
                }
                let want = bytes.iter().position(|&b| special(b));
                assert_eq!(find_special(&bytes), want, "{bytes:?}");
                // Both block tests find the same first byte.
                if let Some(block) = bytes.first_chunk::<16>() {
                    let by_words = block_marks_by_words(block);
                    assert_eq!(
                        block_marks(block).trailing_zeros(),
                        by_words.trailing_zeros(),
                        "{bytes:?}"
                    );
                    assert_eq!(by_words != 0, want.is_some_and(|i| i < 16), "{bytes:?}");
                }
            }
        }
    }

    /// The scanner's verdict on a whole text agrees with serde_json's.
    fn agrees<T: AsRef<[u8]> + ?Sized>(text: &T) {
        let text = text.as_ref();
        // serde_json skips an ignored string without checking its UTF-8
        // (it does check the raw values the proxy forwards); the scanner
        // checks every string, as JSON text must be UTF-8 (RFC 8259).
        let serde = std::str::from_utf8(text).is_ok()
            && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok();
        let shown = String::from_utf8_lossy(text);
        assert_eq!(value(text).is_ok(), serde, "{shown:?} {text:?}");
    }

    #[test]
    fn valid_values_are_skipped_whole() {
        for text in [
            "0",
            "-0",
            "1.5e+10",
            "-12.25E-3",
            "true",
            "false",
            "null",
            r#""""#,
            r#""a\"b\\c\/\b\f\n\r\t\u00e9\uD83D\uDE00""#,
            "[]",
            "{}",
            r#" [1, {"a": [true, null, {"b": "c"}]}, "x"] "#,
            r#"{"hash":"0xab","txs":[{"v":"0x1"},{"v":"0x2"}],"n":null}"#,
            "\"é ünïcode ✓\"",
        ] {
            assert_eq!(value(text), Ok(text.trim().as_bytes()), "{text:?}");
            agrees(text);
        }
    }

    #[test]
    fn malformed_values_are_refused_where_serde_refuses_them() {
        for text in [
            "",
            " ",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "NaN",
            r#""abc"#,
            "\"a\u{1}b\"",
            "\"tab\there\"",
            r#""\x""#,
            r#""\u12g4""#,
            r#""\u12""#,
            "[1,]",
            "[,1]",
            "[1 2]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1"#,
            "[",
            "]",
            "{]",
            "[}",
            "1 2",
            r#"{"a":[}]}"#,
        ] {
            assert!(value(text).is_err(), "{text:?}");
            agrees(text);
        }
    }

    /// Characters beyond ASCII are checked where they are: in strings,
    /// short or long, as keys or values; what std's UTF-8 check refuses
    /// (overlong forms, surrogates, past U+10FFFF, cut short, a stray
    /// continuation byte) is refused, the rest read.
    #[test]
    fn utf8_is_checked_in_strings() {
        let good: [&[u8]; 5] = [
            "é".as_bytes(),
            "✓".as_bytes(),
            "𝄞".as_bytes(),
            "\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}".as_bytes(),
            "ключ".as_bytes(),
        ];
        let bad: [&[u8]; 8] = [
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xf5\x80\x80\x80",
            b"\xe2\x9c",
            b"\x80",
            b"\xff",
        ];
        // Short strings, strings past the first sixteen bytes and past a
        // vector block, and object member names.
        let pads = ["", "0123456789abcdef", &"x".repeat(40)];
        for pad in pads {
            for (chars, ok) in good
                .iter()
                .map(|c| (c, true))
                .chain(bad.iter().map(|c| (c, false)))
            {
                let mut text = format!("[\"{pad}").into_bytes();
                text.extend_from_slice(chars);
                text.extend_from_slice(b"\",{\"");
                text.extend_from_slice(chars);
                text.extend_from_slice(b"\":1}]");
                assert_eq!(value(&text).is_ok(), ok, "{text:?}");
                agrees(&text);
            }
        }
        // Outside a string, such a byte is no JSON at all.
        assert!(value("[1,é]".as_bytes()).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(value(&ok).is_ok());
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(value(&deep), Err(Scan::Malformed(_))));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(500), "}".repeat(500));
        assert!(value(&objects).is_ok());
    }

    #[test]
    fn answers_give_their_members() {
        let text = r#" {"jsonrpc":"2.0","id":7,"extra":{"x":[1]},"result":{"a":"0x1"}} "#;
        let mut s = Scanner::new(text.as_bytes());
        let f = s.answer().unwrap();
        s.end().unwrap();
        assert_eq!(
            f,
            Fields {
                id: Some(b"7"),
                result: Some(br#"{"a":"0x1"}"#),
                error: None
            }
        );
        let mut s = Scanner::new(br#"{"id":1,"id":2}"#);
        assert_eq!(s.answer(), Err(Scan::Duplicate("id")));
        let mut s = Scanner::new(br#"{"\u0069d":1}"#);
        assert_eq!(s.answer(), Err(Scan::EscapedKey));
        // A name beyond ASCII is no escape: it is read here.
        let mut s = Scanner::new("{\"idé\":1,\"id\":2}".as_bytes());
        assert_eq!(s.answer().unwrap().id, Some(&b"2"[..]));
        let mut s = Scanner::new(b"{}");
        assert_eq!(s.answer(), Ok(Fields::default()));
        let mut s = Scanner::new(b"[]");
        assert!(s.answer().is_err());
    }

    /// `n` texts made from `seed` by one to three random byte changes
    /// (replace, insert, delete) from a JSON-ish alphabet that has bytes
    /// of UTF-8 characters too (leads, continuations, and bytes UTF-8
    /// never has): many results are not UTF-8, which the scanner checks
    /// itself.
    pub(crate) fn mutations(seed: &str, n: usize) -> Vec<Vec<u8>> {
        let alphabet =
            b"{}[]\":,\\ 0123456789-+.eEtrufalsn\x01\tab\x80\xa9\xbf\xc0\xc3\xe2\xed\xf0\xf4\xf5\xff";
        let mut state = 0x2545_f491_4f6c_dd1d_u64 ^ seed.len() as u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() % bytes.len().max(1) as u64) as usize;
                let b = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 => bytes.insert(at.min(bytes.len()), b),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            out.push(bytes);
        }
        out
    }

    /// Random changes to real-looking answers: the scanner and serde_json
    /// must agree on every one.
    #[test]
    fn mutated_answers_get_serde_jsons_verdict() {
        let seeds = [
            r#"{"jsonrpc":"2.0","id":1,"result":{"number":"0x1b4","hash":"0xdc0818cf78f21a8e70579cb46a43643f78291264dda342ae31049421c82d21ae","transactions":[],"uncles":null,"size":1027,"gas":1.5e3,"ok":true,"no":false,"esc":"a\"b\\c\u00e9\n"}}"#,
            r#"[{"id":1,"error":{"code":-32000,"message":"header not found","data":[1,2,{"x":-0.5}]}},{"id":2,"result":"0x"}]"#,
            r#"{"id":3,"result":{"name":"café ✓ 𝄞 ü","ключ":"значение","data":"0xc3a9"}}"#,
        ];
        let mut checked = 0;
        for seed in seeds {
            agrees(seed);
            for text in mutations(seed, 20_000) {
                agrees(&text);
                checked += 1;
            }
        }
        assert!(checked > 50_000, "{checked}");
    }
}
