import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'fs',
  'path',
  'os',
  'child_process',
  'net',
  'http',
  'https',
  'crypto',
  'stream',
  'events',
  'util',
  'url',
  'worker_threads',
];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'release/**',
      'node_modules/**',
      'sandbox-images/agent/dist/**',
      'coverage/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-console': 'error',
    },
  },
  {
    // The core runs under plain Node (`clawbar serve`) as well as inside Electron.
    files: ['main/core/**', 'main/cli/**', 'sandbox-images/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: 'electron',
              message: 'main/core must stay Electron-free; put Electron code in main/app.',
            },
          ],
        },
      ],
    },
  },
  {
    // The renderer talks to the core only through the preload API.
    files: ['renderer/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['electron', ...nodeBuiltins].map((name) => ({
            name,
            message: 'The renderer must not use Node or Electron; use the preload API.',
          })),
          patterns: [
            { group: ['node:*'], message: 'The renderer must not use Node; use the preload API.' },
          ],
        },
      ],
    },
  },
  {
    files: ['bin/**', 'scripts/**'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    // Command-line entry points, scripts, tests and benchmarks may print.
    files: [
      'main/cli/**',
      'scripts/**',
      'bench/**',
      'test/**',
      'bin/**',
      'sandbox-images/agent/runner/**',
    ],
    rules: { 'no-console': 'off' },
  },
);
