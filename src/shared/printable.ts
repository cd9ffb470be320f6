// Text that came from a guest (or from a process a guest can make talk: QEMU, virtiofsd),
// made safe to show: in error messages, on stderr, in `--log` (which podman and Docker relay
// to their users) and in moatd's log. A guest's string must not move a terminal's cursor,
// clear its screen, set its title, forge a log line or hide text (SPECIFICATION promise 5).

/**
 * Control characters, each replaced: C0 and DEL (ESC starts terminal escape sequences), C1
 * (U+009B is a one-character CSI on terminals that read 8-bit controls), the Unicode line and
 * paragraph separators, and the bidirectional overrides and isolates that reorder what is shown.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const WHITESPACE_CONTROL = /[\t\n\v\f\r]/g;

/**
 * `text` on one line, without control characters (tabs and line breaks become spaces, any
 * other control character "?"), trailing spaces trimmed, and cut to at most `maxChars`
 * characters ("…" marks the cut, and is the one character over).
 */
export function printable(text: string, maxChars: number): string {
  const cut = text.length > maxChars * 2 ? text.slice(0, maxChars * 2) : text; // no work on the part that is dropped anyway
  const clean = cut.replace(WHITESPACE_CONTROL, " ").replace(CONTROL, "?").trimEnd();
  if (clean.length <= maxChars && cut.length === text.length) return clean;
  // Do not end on half of a surrogate pair.
  const end = isHighSurrogate(clean.charCodeAt(maxChars - 1)) ? maxChars - 1 : maxChars;
  return `${clean.slice(0, Math.min(end, clean.length))}…`;
}

/** The last `maxLines` lines of `text`, each printable, joined by " | " on one line, at most `maxChars` characters. */
export function printableTail(text: string, maxLines: number, maxChars: number): string {
  const lines = text
    .split(/\r?\n/)
    .map((line) => printable(line, maxChars))
    .filter((line) => line.length > 0)
    .slice(-maxLines);
  return printable(lines.join(" | "), maxChars);
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
