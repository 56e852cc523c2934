"""The admin listener's status page in Debian's Chromium (Selenium): loads it,
checks what a person must see at a glance, and saves a screenshot.

Usage: browser_status.py [--sign-in HOST] URL SCREENSHOT WORD...
  (each WORD must be on the page)
  --sign-in HOST: HOST is mapped to 127.0.0.1; the URL carries the account
  (http://DOMAIN%5Cuser:password@HOST:port/status) and Chromium answers the
  page's challenge with it (NTLM: Debian's Chromium has no GSSAPI library
  support for Negotiate, so the challenge's NTLM is taken); the page's style
  is then not required to colour a header (a refusal page has none)."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def main():
    args = sys.argv[1:]
    negotiate = None
    if args[:1] == ["--sign-in"]:
        negotiate, args = args[1], args[2:]
    url, shot, words = args[0], args[1], args[2:]
    with tempfile.TemporaryDirectory() as profile:
        opts = chromium.webdriver.ChromeOptions()
        opts.binary_location = chromium.CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server",
                     "--no-first-run", "--window-size=1280,1400", f"--user-data-dir={profile}"):
            opts.add_argument(flag)
        if negotiate:
            opts.add_argument(f"--host-resolver-rules=MAP {negotiate} 127.0.0.1")
        driver = chromium.start(opts)
        try:
            driver.get(url)
            text = driver.find_element(By.TAG_NAME, "body").text
            missing = [w for w in words if w not in text]
            if missing:
                print(f"not on the page: {missing}\n---\n{text}")
                sys.exit(1)
            # The style sheet applied (CSP allows only ours): the header is coloured.
            headers = driver.find_elements(By.TAG_NAME, "header")
            if not headers and not negotiate:
                print("the page has no header")
                sys.exit(1)
            colour = headers[0].value_of_css_property("background-color") if headers else "n/a"
            if colour in ("rgba(0, 0, 0, 0)", "transparent"):
                print(f"the style sheet did not apply (header background {colour})")
                sys.exit(1)
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1280, min(max(height + 160, 600), 3200))
            driver.save_screenshot(shot)
            print(f"status page ok; screenshot {shot}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
