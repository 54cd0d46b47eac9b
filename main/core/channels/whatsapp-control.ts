/**
 * What the rest of Clawbar may ask of the WhatsApp channel besides carrying messages: its
 * state, pairing a phone, unlinking it. The core exposes it as `core.whatsapp` (null when the
 * channel is not enabled); the control handlers (`clawbar pair`, `clawbar unlink`, `status`)
 * and the tray use it, so they never touch Baileys.
 *
 * Also here, because the CLI and the control handlers share them: the phone-number rule for
 * pairing by code, and the pairing flow itself (start, report each QR or code, end at `open`).
 * Light on purpose: types and plain functions only, so the CLI can import it cheaply.
 */
import type { ChannelState } from './channel.js';

/** Why the WhatsApp connection last closed: WhatsApp's status code and its meaning. */
export interface WhatsAppDisconnect {
  /** The disconnect status code (401 logged out, 440 replaced, 515 restart…), when there is one. */
  code?: number;
  /** In words, for a person. */
  reason: string;
  /** When, in milliseconds since the epoch. */
  at: number;
}

/** The WhatsApp channel's controls, as the core exposes them. */
export interface WhatsAppControl {
  /** The connection state now (the last one the channel reported). */
  state(): ChannelState;
  /**
   * Starts linking a phone: by QR (each payload is reported as a `qr` state, refreshing), or
   * with `phone`, by a pairing code (reported as a `pairing-code` state). Resolves once the
   * attempt is under way; `open` is reported through the channel's state when it is linked.
   * Rejects when pairing cannot start (e.g. already linked).
   */
  startPairing(opts: { phone?: string }): Promise<void>;
  /** Logs out (when connected) and wipes the stored auth state; the state ends "needs pairing". */
  unlink(): Promise<void>;
  /** Why the connection last closed, or null when it never has. */
  lastDisconnect(): WhatsAppDisconnect | null;
}

/** A phone number for pairing by code was not one: it says what a valid one looks like. */
export class InvalidPhoneNumberError extends Error {
  override readonly name = 'InvalidPhoneNumberError';
}

/**
 * The phone number as WhatsApp wants it for a pairing code: digits only, with the country
 * code, 8 to 15 of them (E.164). Spaces, dashes, dots, brackets and one leading `+` are
 * accepted and dropped, as people write numbers; anything else is refused.
 */
export function normalizePhoneNumber(raw: string): string {
  const trimmed = raw.trim();
  if (!/^\+?[\d\s().-]+$/.test(trimmed)) {
    throw new InvalidPhoneNumberError(
      `"${printable(raw)}" is not a phone number; give the digits with the country code, like +15551234567`,
    );
  }
  const digits = trimmed.replace(/\D/g, '');
  if (digits.length < 8 || digits.length > 15) {
    throw new InvalidPhoneNumberError(
      `a phone number has 8 to 15 digits with the country code (like +15551234567); "${printable(raw)}" has ${digits.length}`,
    );
  }
  if (digits.startsWith('0')) {
    throw new InvalidPhoneNumberError(
      `"${printable(raw)}" starts with 0: give the country code instead of a trunk prefix, like +4915123456789`,
    );
  }
  return digits;
}

/** A stage of `clawbar pair`, as progress before its answer. */
export interface PairingUpdate {
  stage: 'connecting' | 'qr' | 'pairing-code' | 'paired';
  /** For `qr`, the raw QR payload to draw; for `pairing-code`, the code; else a line for a person. */
  text: string;
}

/** How {@link pairWhatsApp} reaches the channel and the caller. */
export interface PairingDeps {
  control: WhatsAppControl;
  /** Subscribes to the channel's state changes; returns the unsubscribe. */
  onState(listener: (state: ChannelState) => void): () => void;
  /** Each new QR, pairing code, or connection step. */
  progress(update: PairingUpdate): void;
  /** Ends the wait (the client went away, or serve is stopping). */
  signal: AbortSignal;
  /** @default 10 minutes */
  timeoutMs?: number;
}

/** The answer of a finished pairing. */
export interface PairingResult {
  state: 'open';
}

/** Pairing did not end with a linked phone; the message says why and what to do. */
export class PairingError extends Error {
  override readonly name = 'PairingError';
}

/** @default 10 minutes: Baileys gives up on QR codes well before. */
export const DEFAULT_PAIRING_TIMEOUT_MS = 10 * 60_000;

/**
 * Starts pairing and follows the channel until it is linked: each QR payload and pairing code
 * is passed to `progress` as it comes (a QR refreshes every few tens of seconds), and the
 * promise resolves when the state is `open`. It rejects with {@link PairingError} when the
 * channel gives up (a close it will not retry: QR codes ran out, another client took over),
 * on timeout, or when `signal` aborts. Every listener and timer is removed when it settles.
 */
export function pairWhatsApp(
  deps: PairingDeps,
  opts: { phone?: string } = {},
): Promise<PairingResult> {
  const { control } = deps;
  const phone = opts.phone === undefined ? undefined : normalizePhoneNumber(opts.phone);
  if (control.state().state === 'open') {
    return Promise.reject(
      new PairingError(
        'WhatsApp is already linked to a phone; run `clawbar unlink` first to link another',
      ),
    );
  }
  return new Promise<PairingResult>((resolve, reject) => {
    let settled = false;
    let last = '';
    const cleanups: Array<() => void> = [];
    const finish = (outcome: { ok: true } | { ok: false; error: Error }): void => {
      if (settled) return;
      settled = true;
      for (const cleanup of cleanups) cleanup();
      if (outcome.ok) resolve({ state: 'open' });
      else reject(outcome.error);
    };
    const say = (update: PairingUpdate): void => {
      const key = `${update.stage}:${update.text}`;
      if (key === last) return;
      last = key;
      deps.progress(update);
    };
    /** Whether the channel has reported pairing under way (connecting, a QR, a code). */
    let started = false;
    const follow = (state: ChannelState): void => {
      if (settled) return;
      if (state.state === 'connecting' || state.state === 'qr' || state.state === 'pairing-code')
        started = true;
      switch (state.state) {
        case 'connecting':
          say({ stage: 'connecting', text: 'connecting to WhatsApp' });
          return;
        case 'qr':
          say({ stage: 'qr', text: state.qr });
          return;
        case 'pairing-code':
          say({ stage: 'pairing-code', text: state.code });
          return;
        case 'open':
          say({ stage: 'paired', text: 'paired' });
          finish({ ok: true });
          return;
        case 'closed':
          // After a scan WhatsApp asks for a restart (515): the channel reconnects by itself.
          if (state.retrying) {
            say({ stage: 'connecting', text: `reconnecting (${describeClose(state)})` });
            return;
          }
          finish({
            ok: false,
            error: new PairingError(
              `pairing stopped: ${describeClose(state)}${againUnlessSaid(describeClose(state))}`,
            ),
          });
          return;
        case 'needs-pairing':
          // The state pairing starts from; once under way, it means pairing ended unlinked
          // (the QR codes ran out, the phone refused).
          if (!started) return;
          finish({
            ok: false,
            error: new PairingError(
              `pairing stopped: ${describeClose(state)}${againUnlessSaid(describeClose(state))}`,
            ),
          });
          return;
        default: {
          // A state this version does not know: not a reason to stop waiting.
          const unknown: never = state;
          return unknown;
        }
      }
    };

    const onAbort = (): void =>
      finish({
        ok: false,
        error: new PairingError('pairing was cancelled before a phone was linked'),
      });
    if (deps.signal.aborted) {
      onAbort();
      return;
    }
    deps.signal.addEventListener('abort', onAbort, { once: true });
    cleanups.push(() => deps.signal.removeEventListener('abort', onAbort));
    const timeoutMs = deps.timeoutMs ?? DEFAULT_PAIRING_TIMEOUT_MS;
    const timer = setTimeout(
      () =>
        finish({
          ok: false,
          error: new PairingError(
            `no phone was linked within ${Math.round(timeoutMs / 1000)} s; run \`clawbar pair\` again`,
          ),
        }),
      timeoutMs,
    );
    cleanups.push(() => clearTimeout(timer));
    // Subscribed before starting, so no state the start reports is missed.
    cleanups.push(deps.onState(follow));
    control.startPairing(phone === undefined ? {} : { phone }).then(
      // States reported during the start were followed; the current one may predate them all
      // (the channel was already showing a QR).
      () => {
        const now = control.state();
        if (now.state !== 'closed' && now.state !== 'needs-pairing') follow(now);
      },
      (err: unknown) =>
        finish({
          ok: false,
          error: new PairingError(
            `pairing could not start: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          ),
        }),
    );
  });
}

/** A closed state in words: `logged out (401)`. */
export function describeClose(state: { reason: string; code?: number }): string {
  return state.code === undefined ? state.reason : `${state.reason} (${state.code})`;
}

/** Text from a person, fit for one line of an error: control characters shown as `?`. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.slice(0, 40).replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, '?');
}

/** "; run `clawbar pair` again", unless the reason already says what to run. */
function againUnlessSaid(reason: string): string {
  return reason.includes('clawbar pair') ? '' : '; run `clawbar pair` again';
}
