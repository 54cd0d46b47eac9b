/**
 * Connection: WhatsApp's state and why it last disconnected, the pairing QR drawn live from
 * `channel:state` events (each new QR replaces the last), a form to pair by phone number
 * instead, and unlink.
 */
import QRCode from 'qrcode';
import type { ChannelState, PairingStateView, UiEvent } from '../../preload/ipc-contract.js';
import { actionButton, h } from '../dom.js';
import { describeChannelState, formatLocalTime } from '../view-model.js';
import type { Panel, PanelContext } from './panel.js';

/** The QR's size on screen, in CSS pixels; large enough for a phone camera at arm's length. */
const QR_SIZE_PX = 224;

export function createConnectionPanel({ api, showError }: PanelContext): Panel {
  const stateLine = h('p', { class: 'headline', 'aria-live': 'polite' }, 'Checking…');
  const qr = h('canvas', {
    class: 'qr',
    role: 'img',
    'aria-label': 'WhatsApp pairing QR code',
    hidden: true,
  });
  const lastDisconnect = h('p', { class: 'muted' });
  const phone = h('input', {
    id: 'pair-phone',
    type: 'tel',
    inputmode: 'tel',
    autocomplete: 'tel',
    placeholder: '+49 151 2345678',
    required: true,
  });
  const pairForm = h(
    'form',
    { class: 'row', 'aria-label': 'Pair with a phone number' },
    h('label', { for: 'pair-phone' }, 'Phone number'),
    phone,
    h('button', { type: 'submit' }, 'Get pairing code'),
  );
  const showQr = actionButton('Pair with a QR code', () => pair(), showError);
  const unlink = unlinkControl();
  const controls = h(
    'div',
    { class: 'stack' },
    pairForm,
    h('div', { class: 'row' }, showQr, unlink),
  );
  const element = h('div', {}, h('h2', {}, 'WhatsApp'), stateLine, qr, lastDisconnect, controls);

  pairForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void pair(phone.value).catch(showError);
  });

  async function pair(phoneNumber?: string): Promise<void> {
    const view = await api.whatsapp.pair(phoneNumber ? { phone: phoneNumber } : undefined);
    show(view);
  }

  /** Unlink asks once more before it wipes the credentials: it cannot be undone. */
  function unlinkControl(): HTMLElement {
    const ask = h('button', { type: 'button', class: 'danger' }, 'Unlink…');
    const confirm = actionButton(
      'Yes, unlink this Clawbar',
      async () => {
        const done = await api.whatsapp.unlink();
        reset();
        showState(done.state);
      },
      showError,
      { class: 'danger' },
    );
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const confirmRow = h('span', { class: 'row', hidden: true }, confirm, cancel);
    const reset = (): void => {
      confirmRow.hidden = true;
      ask.hidden = false;
    };
    ask.addEventListener('click', () => {
      ask.hidden = true;
      confirmRow.hidden = false;
      confirm.focus();
    });
    cancel.addEventListener('click', () => {
      reset();
      ask.focus();
    });
    return h('span', {}, ask, confirmRow);
  }

  function showState(state: ChannelState | null): void {
    stateLine.textContent = describeChannelState(state);
    stateLine.dataset.state = state?.state ?? 'disabled';
    if (state?.state === 'qr') {
      // The payload changes every ~20 s; each event draws the new one over the old.
      QRCode.toCanvas(qr, state.qr, { width: QR_SIZE_PX, margin: 2 }).then(
        () => (qr.hidden = false),
        showError,
      );
    } else {
      qr.hidden = true;
    }
    const open = state?.state === 'open';
    pairForm.hidden = open || state === null;
    showQr.hidden = open || state === null || state.state === 'qr';
  }

  function show(view: PairingStateView): void {
    controls.hidden = !view.enabled;
    showState(view.enabled ? view.state : null);
    const last = view.lastDisconnect;
    lastDisconnect.textContent = last
      ? `Last disconnect: ${last.reason}${last.code === undefined ? '' : ` (code ${last.code})`}, ${formatLocalTime(last.at)}`
      : '';
  }

  return {
    id: 'connection',
    title: 'Connection',
    element,
    async refresh() {
      show(await api.whatsapp.state());
    },
    onEvent(event: UiEvent) {
      if (event.type !== 'channel:state' || event.channel !== 'whatsapp') return;
      showState(event.state);
      // A close carries the new disconnect reason, which only `whatsapp:state` has.
      if (event.state.state === 'closed' || event.state.state === 'needs-pairing')
        void api.whatsapp.state().then(show, showError);
    },
  };
}
