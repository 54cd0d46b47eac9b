/**
 * The tray window's Content Security Policy, in one place for every way the page is served:
 * the desktop app's `app://` protocol (`main/app/security.ts`), the headless HTTP bridge
 * (`http-server.ts`), and the `<meta>` in `renderer/index.html`, which a unit test holds to
 * {@link PAGE_CSP_META}. The browser enforces every policy it is given, so a looser copy
 * anywhere would only mislead a reader.
 *
 * Our own scripts and stylesheet only (the renderer never writes a `style` attribute; the QR
 * is drawn on a canvas), images from us or `data:` (the QR's fallback), calls to our own
 * origin only, no frames, no plugins, no forms posting anywhere.
 */
const DIRECTIVES = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
] as const;

/** The policy sent as a response header. */
export const PAGE_CSP = [...DIRECTIVES, "frame-ancestors 'none'"].join('; ');

/**
 * The policy in the page's `<meta>`: the header's, less `frame-ancestors`, which browsers
 * ignore (and warn about) in a `<meta>`.
 */
export const PAGE_CSP_META = DIRECTIVES.join('; ');
