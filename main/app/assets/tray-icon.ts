/**
 * The tray icon: three claw marks, 32×32 px, drawn for a 16 pt menu-bar slot at 2× scale.
 * Embedded as base64 PNG so the build needs no asset-copy step (tsc emits only .js).
 */

/** Black on transparent: a macOS template image, which the menu bar recolours for light and dark mode. */
export const TRAY_ICON_TEMPLATE_PNG =
  'iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAABLElEQVR42u2WQQ3DMAxFDaEQCmEQDGEQBqEQzKAQCmEQAqUQAiHbpByqKPZ3416m7R928f7bl+NkJvrLpzsRsVGf3h8SZKiaiSiDH1iJqAQZqlKFL0qdaz0HGKqWaixK+z6t32s9DTLMc83ALId6GmSoOsJLhVnwdYBhKjdmq7VFGTDEUPVojD3zDgJ4GKqejbGd8FsHvpxkmGrhCZxtb8AQQxU7zAkE4EgAcZgLCCCRAFvHLM2zWsCAIYbr6dXM7AiQrg6wgAD5JON0AL54SL8vALqmcpJhagXmyRFgjQQQx/1F7ZXRN6DX4uQ4Jh5guP8LxNGlEYZ7EMXRpRGGexd8gIVlDzDMNRrd3w2c7zy6C7YtZDCsKcBwrWWz8Z29diLCgG8CurIcZPy4XrPPLWLDy9G+AAAAAElFTkSuQmCC';

/** Claude orange on transparent, for Linux panels, whose colour (light or dark) is unknown. */
export const TRAY_ICON_COLOR_PNG =
  'iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAYAAABzenr0AAABR0lEQVR42uWXzQ3CMAxGM0JH6AiM4BG49doReus1G3QERmAEz5FTR8gIAaQgVVHjz3UqoYoD4hC+lyfnB8eFeXC//LirCNzDPJAw3r2/vYWhmbwP8xDBBEuYh2RhaAQ4w6fKOOXxaGGgyaccTJUl+JR+zeNsYTiwrhEI+M04WxiSwBaeMkyCLwaGKBCLsFTaVNmkiFEVGIvgXngFAhpGVeBZBMsdftuBTwcZokAJZ7C2exsMMaoCpAgzEKAWAa8IJyDgWwQeO2FfXKsJbDDEEAUYhEkhwGcLTEAgHmQcFqCTN+n1BNAx9QcZosACwp1CYGkR8Irzi8qrYahvQlYsExkY6v8Cr6iShSEKMAiTQoBbBLbNxggalrWB4aQ2Wjy/m/ueGxhO044TaMe5gSEKfFuqXvjNmithZqB3AXpuEXiyQYb7+9fxC+mdybxvvQ1jAAAAAElFTkSuQmCC';
