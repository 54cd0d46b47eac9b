/**
 * The tray icon for each state, drawn in code at 32×32 px (a 16 pt slot at 2× scale) and
 * encoded as PNG with Node's zlib. Drawing beats checked-in binaries here: five states times
 * two styles stay consistent, need no asset-copy step (tsc emits only .js), and a test can
 * check that every state looks different.
 *
 * The mark is three claw strokes; the state is a badge in the lower-right corner, cut out of
 * the mark so it reads at menu-bar size:
 *   idle: no badge · working: a dot · paused: two bars · needs pairing: a ring · error: "!"
 * On macOS the icon is a template image (black and alpha; the menu bar tints it for light and
 * dark mode), so the badges differ by shape, not colour. On Linux they are coloured too.
 */
import zlib from 'node:zlib';

export type TrayIconState = 'idle' | 'working' | 'paused' | 'needs-pairing' | 'error';
export type TrayIconStyle = 'template' | 'color';

export const TRAY_ICON_SIZE = 32;

type Rgb = readonly [number, number, number];

const MARK_COLOR: Rgb = [0xd9, 0x77, 0x57];
const BADGE_COLORS: Record<TrayIconState, Rgb> = {
  idle: MARK_COLOR,
  working: [0x3b, 0x82, 0xf6],
  paused: [0x9c, 0xa3, 0xaf],
  'needs-pairing': [0xf5, 0x9e, 0x0b],
  error: [0xef, 0x44, 0x44],
};

/** A signed distance: negative inside the shape, in pixels. */
type Shape = (x: number, y: number) => number;

const capsule =
  (ax: number, ay: number, bx: number, by: number, r: number): Shape =>
  (x, y) => {
    const [dx, dy, px, py] = [bx - ax, by - ay, x - ax, y - ay];
    const t = Math.max(0, Math.min(1, (px * dx + py * dy) / (dx * dx + dy * dy)));
    return Math.hypot(px - t * dx, py - t * dy) - r;
  };
const circle =
  (cx: number, cy: number, r: number): Shape =>
  (x, y) =>
    Math.hypot(x - cx, y - cy) - r;
const ring =
  (cx: number, cy: number, r: number, width: number): Shape =>
  (x, y) =>
    Math.abs(Math.hypot(x - cx, y - cy) - r) - width / 2;
const union =
  (...shapes: Shape[]): Shape =>
  (x, y) =>
    Math.min(...shapes.map((s) => s(x, y)));

const BADGE_X = 24.5;
const BADGE_Y = 24.5;
const MARK = union(
  capsule(12, 3, 5, 23, 2.1),
  capsule(19, 3, 12, 23, 2.1),
  capsule(26, 3, 19, 23, 2.1),
);
const CUTOUT = circle(BADGE_X, BADGE_Y, 8.5);

const BADGES: Record<TrayIconState, Shape | null> = {
  idle: null,
  working: circle(BADGE_X, BADGE_Y, 5.5),
  paused: union(
    capsule(BADGE_X - 2.5, BADGE_Y - 4, BADGE_X - 2.5, BADGE_Y + 4, 1.6),
    capsule(BADGE_X + 2.5, BADGE_Y - 4, BADGE_X + 2.5, BADGE_Y + 4, 1.6),
  ),
  'needs-pairing': ring(BADGE_X, BADGE_Y, 4.8, 2.4),
  error: union(
    capsule(BADGE_X, BADGE_Y - 5, BADGE_X, BADGE_Y + 1, 1.7),
    circle(BADGE_X, BADGE_Y + 5, 1.8),
  ),
};

/** Anti-aliased coverage of a pixel centre by a shape. */
const coverage = (shape: Shape, x: number, y: number): number =>
  Math.max(0, Math.min(1, 0.5 - shape(x + 0.5, y + 0.5)));

/** The icon as raw RGBA pixels, row by row. */
export function drawTrayIcon(state: TrayIconState, style: TrayIconStyle): Uint8Array {
  const size = TRAY_ICON_SIZE;
  const pixels = new Uint8Array(size * size * 4);
  const badge = BADGES[state];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const badgeCover = badge ? coverage(badge, x, y) : 0;
      // With a badge, the mark is cut back around it, so the two never touch.
      const markCover = coverage(MARK, x, y) * (badge ? 1 - coverage(CUTOUT, x, y) : 1);
      const alpha = Math.max(badgeCover, markCover);
      if (alpha === 0) continue;
      const color: Rgb =
        style === 'template'
          ? [0, 0, 0]
          : badgeCover >= markCover
            ? BADGE_COLORS[state]
            : MARK_COLOR;
      pixels.set([...color, Math.round(alpha * 255)], (y * size + x) * 4);
    }
  }
  return pixels;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(body.length + 8);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), body.length + 4);
  return out;
}

/** Encodes square RGBA pixels as a PNG (8-bit RGBA, no filtering, zlib-compressed). */
export function encodePng(pixels: Uint8Array, size: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8); // bit depth 8, colour type RGBA, deflate, no filter, no interlace
  const rows = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++)
    rows.set(pixels.subarray(y * size * 4, (y + 1) * size * 4), y * (size * 4 + 1) + 1);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(rows, { level: 9 })),
    chunk('IEND', new Uint8Array()),
  ]);
}

const cache = new Map<string, Buffer>();

/** The PNG for a state and style; drawn once, then cached. */
export function trayIconPng(state: TrayIconState, style: TrayIconStyle): Buffer {
  const key = `${state}/${style}`;
  let png = cache.get(key);
  if (!png) {
    png = encodePng(drawTrayIcon(state, style), TRAY_ICON_SIZE);
    cache.set(key, png);
  }
  return png;
}
