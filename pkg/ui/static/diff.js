// A unified line diff, for the Object page: the lines of a and b compared
// by their longest common subsequence, shown with three lines of context.

// maxCells bounds the comparison table (lines of a × lines of b); larger
// objects are shown as all removed and all added rather than freezing the
// page.
const maxCells = 4_000_000;
const context = 3;

// diffLines returns [class, text] pairs: class is 'add', 'del', 'hunk' or ''.
export function diffLines(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  const ops = [];
  if (x.length * y.length > maxCells) {
    x.forEach((l) => ops.push(['del', l]));
    y.forEach((l) => ops.push(['add', l]));
  } else {
    const n = x.length;
    const m = y.length;
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { ops.push(['', x[i]]); i++; j++; }
      // A changed line shows as its old text, then its new one, as diff -u.
      else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { ops.push(['del', x[i]]); i++; }
      else { ops.push(['add', y[j]]); j++; }
    }
  }
  // Keep the changed lines and their context; '…' marks what is left out.
  const keep = ops.map(() => false);
  ops.forEach(([t], k) => {
    if (!t) return;
    for (let c = Math.max(0, k - context); c <= Math.min(ops.length - 1, k + context); c++) keep[c] = true;
  });
  if (!keep.some((v, k) => v && ops[k][0])) return [];
  const out = [];
  let skipped = false;
  ops.forEach(([t, s], k) => {
    if (!keep[k]) { skipped = true; return; }
    if (skipped || (out.length === 0 && k > 0)) out.push(['hunk', '…']);
    skipped = false;
    out.push([t, (t === 'add' ? '+ ' : t === 'del' ? '- ' : '  ') + s]);
  });
  if (skipped) out.push(['hunk', '…']);
  return out;
}
