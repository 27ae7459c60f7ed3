// Browser test of FIDO login through the real pages (DESIGN §7, issue 3): Debian's headless
// Chromium driven by playwright-core, the clinic client certificate presented by Playwright, and
// Chromium's CDP virtual WebAuthn authenticator (its real WebAuthn stack: RP ID checks,
// browser-built clientData, a CTAP2 authenticator model).
//
// Flow: log in → a wrong code is refused with the message → link with the code → log out →
// log in → authenticate with FIDO → 認証済み with the expiry → end the signing session.
//
// Started by tests/integration/e2e.rs, which runs a gateway with a seeded doctor and code and
// passes: BASE_URL (https://localhost:PORT), CLIENT_CERT, CLIENT_KEY (PEM paths), LOGIN_ID,
// PASSWORD, ENROLL_CODE; optional CHROMIUM (default /usr/bin/chromium), ARTIFACTS (screenshots).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const artifacts = process.env.ARTIFACTS;
let passed = 0;
let step = 'start';

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  passed += 1;
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let page;
try {
  const ctx = await browser.newContext({
    // The test server certificate comes from a per-run CA the browser does not know.
    ignoreHTTPSErrors: true,
    locale: 'ja-JP',
    clientCertificates: [{ origin: base, certPath: env('CLIENT_CERT'), keyPath: env('CLIENT_KEY') }],
  });
  ctx.setDefaultTimeout(20000);
  page = await ctx.newPage();
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'usb', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  const login = async () => {
    step = 'login';
    await page.goto(`${base}/login`);
    await page.fill('#login_id', env('LOGIN_ID'));
    await page.fill('#password', env('PASSWORD'));
    await Promise.all([page.waitForURL('**/methods'), page.click('form[action="/login"] button[type=submit]')]);
  };

  await login();
  check(await page.isDisabled('#fido-auth'), 'FIDO button is disabled before anything is linked');
  check((await page.textContent('#linked-none')).includes('まだ登録されていません'), 'no linked authenticators yet');

  step = 'wrong code';
  await page.fill('#enroll-code', 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA');
  await page.click('#link-code');
  await page.waitForFunction(() => document.getElementById('fido-status').textContent.length > 0);
  const refusal = await page.textContent('#fido-status');
  check(refusal.includes('登録コードが正しくありません'), `wrong code refused: ${refusal}`);

  step = 'link with code';
  await page.fill('#enroll-code', env('ENROLL_CODE').toLowerCase());
  await page.fill('#credential-name', 'E2Eキー');
  await Promise.all([page.waitForURL(/done=linked/), page.click('#link-code')]);
  check((await page.textContent('p.notice')).includes('FIDO認証器を登録しました'), 'linked notice shown');
  check((await page.textContent('#linked')).includes('E2Eキー'), 'the new authenticator is listed');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(credentials.length === 1 && credentials[0].rpId === 'localhost', 'virtual authenticator holds one credential for RP localhost');

  step = 'logout';
  await Promise.all([page.waitForURL(/signed_out/), page.click('#sign-out')]);
  check((await page.textContent('p.notice')).includes('ログアウトしました'), 'signed out');

  await login();
  step = 'authenticate';
  check(!(await page.isDisabled('#fido-auth')), 'FIDO button is enabled');
  check(!(await page.content()).includes('認証済み'), 'not authenticated yet');
  await Promise.all([page.waitForURL(/done=authenticated/), page.click('#fido-auth')]);
  check((await page.textContent('#signing-state')).trim() === '認証済み', 'page shows 認証済み');
  const expires = await page.textContent('#signing-expires');
  check(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}（日本時間）/.test(expires), `expiry shown in JST: ${expires}`);
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(after.credentials[0].signCount >= 1, 'the authenticator signed (counter advanced)');
  if (artifacts) {
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: `${artifacts}/authenticated.png`, fullPage: true });
  }

  step = 'end session';
  await Promise.all([page.waitForURL(/done=ended/), page.click('#end-signing')]);
  check((await page.textContent('p.notice')).includes('署名セッションを終了しました'), 'ended notice shown');
  check(!(await page.content()).includes('認証済み'), 'no longer authenticated');

  console.log(`\n${passed} passed, 0 failed`);
} catch (e) {
  console.error(`e2e failed at step "${step}": ${e && e.stack ? e.stack : e}`);
  if (artifacts && page) {
    try {
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: `${artifacts}/failure.png`, fullPage: true });
    } catch (_) { /* best effort */ }
  }
  console.log(`\n${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
