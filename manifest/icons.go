package manifest

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
)

// Teams wants a 192×192 full-colour icon and a 32×32 outline icon that is
// white on a transparent background.
const (
	ColorIconSize   = 192
	OutlineIconSize = 32
)

// accent is the icon's background and the manifest's accentColor.
var accent = color.NRGBA{R: 0x5B, G: 0x5F, B: 0xC7, A: 0xFF}

// ColorIcon draws the app's colour icon: a white upward arrow (an upgrade)
// on the accent colour.
func ColorIcon() []byte {
	return draw(ColorIconSize, 0.14, accent)
}

// OutlineIcon draws the same arrow, white on transparent.
func OutlineIcon() []byte {
	return draw(OutlineIconSize, 0.02, color.NRGBA{})
}

// draw renders the arrow with 4×4 supersampling so its edges are smooth.
// margin is the part of the size left around the arrow.
func draw(size int, margin float64, bg color.NRGBA) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	const ss = 4
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			hits := 0
			for sy := 0; sy < ss; sy++ {
				for sx := 0; sx < ss; sx++ {
					u := (float64(x) + (float64(sx)+0.5)/ss) / float64(size)
					v := (float64(y) + (float64(sy)+0.5)/ss) / float64(size)
					if inArrow(u, v, margin) {
						hits++
					}
				}
			}
			cover := float64(hits) / (ss * ss)
			img.SetNRGBA(x, y, blendWhite(bg, cover))
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory image cannot fail
	}
	return buf.Bytes()
}

// inArrow reports whether (u, v) in the unit square lies in the arrow: a
// triangular head over a shaft, inset by margin.
func inArrow(u, v, margin float64) bool {
	span := 1 - 2*margin
	u, v = (u-margin)/span, (v-margin)/span
	if u < 0 || u > 1 || v < 0 || v > 1 {
		return false
	}
	// Head: apex at (0.5, 0.12), base from (0.16, 0.52) to (0.84, 0.52).
	if v >= 0.12 && v <= 0.52 {
		half := (v - 0.12) / 0.40 * 0.34
		return u >= 0.5-half && u <= 0.5+half
	}
	// Shaft.
	return v > 0.52 && v <= 0.88 && u >= 0.37 && u <= 0.63
}

func blendWhite(bg color.NRGBA, cover float64) color.NRGBA {
	if bg.A == 0 {
		return color.NRGBA{R: 0xFF, G: 0xFF, B: 0xFF, A: uint8(cover*255 + 0.5)}
	}
	mix := func(c uint8) uint8 { return uint8(float64(c)*(1-cover) + 255*cover + 0.5) }
	return color.NRGBA{R: mix(bg.R), G: mix(bg.G), B: mix(bg.B), A: 0xFF}
}
