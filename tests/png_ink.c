/* png_ink.c PNG — prints "WIDTH HEIGHT INK COLOUR" for a PNG image (libpng's simplified API):
 * INK the pixels that are not near-white (any channel below 235), COLOUR the pixels of a clear
 * hue (the largest and smallest channel differ by more than 80: chart lines, not black or grey
 * text). The browser test (test_report_browser.sh) tells a rendered page from a blank one with
 * it. Exit 2 if the file is not a readable PNG. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: png_ink FILE.png\n");
        return 2;
    }
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, argv[1])) {
        fprintf(stderr, "png_ink: %s: %s\n", argv[1], im.message);
        return 2;
    }
    im.format = PNG_FORMAT_RGB;
    if ((size_t)im.width * im.height > ((size_t)1 << 28)) {
        fprintf(stderr, "png_ink: %s: %ux%u is too large\n", argv[1], im.width, im.height);
        png_image_free(&im);
        return 2;
    }
    unsigned char *px = malloc(PNG_IMAGE_SIZE(im));
    if (!px || !png_image_finish_read(&im, NULL, px, 0, NULL)) {
        fprintf(stderr, "png_ink: %s: %s\n", argv[1], px ? im.message : "out of memory");
        free(px);
        return 2;
    }
    size_t ink = 0, colour = 0, n = (size_t)im.width * im.height;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = px + 3 * i;
        int mx = p[0], mn = p[0];
        for (int c = 1; c < 3; c++) {
            mx = p[c] > mx ? p[c] : mx;
            mn = p[c] < mn ? p[c] : mn;
        }
        ink += mn < 235;
        colour += mx - mn > 80;
    }
    printf("%u %u %zu %zu\n", im.width, im.height, ink, colour);
    free(px);
    return 0;
}
