import { describe, expect, it } from 'vitest';
import { commandLogFormat } from '../../core/log.js';

describe('commandLogFormat: what `refresh` and `login` print their log lines as', () => {
  it('a person at a terminal, LOG_FORMAT unset: text lines', () => {
    expect(commandLogFormat('json', {}, true)).toBe('pretty');
  });
  it('LOG_FORMAT set wins, terminal or not', () => {
    expect(commandLogFormat('json', { LOG_FORMAT: 'json' }, true)).toBe('json');
    expect(commandLogFormat('pretty', { LOG_FORMAT: 'pretty' }, false)).toBe('pretty');
  });
  it('piped or under journald: the configured JSON', () => {
    expect(commandLogFormat('json', {}, false)).toBe('json');
  });
});
